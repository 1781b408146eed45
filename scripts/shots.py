"""Accuracy against shots on a simulated new camera: fine-tuned from the NEU model vs trained from scratch.

The simulated camera is a fixed, documented transform of NEU-CLS (:func:`new_camera`):

* resolution: 200x200 -> 256x256 (bicubic), so the tiles are seen at 1.28x the NEU scale;
* orientation: rotated 90 degrees clockwise (the strip runs the other way);
* lighting: gamma 0.8, gain 0.85, a left-to-right illumination gradient from 0.8x to 1.1x;
* noise: Gaussian, sigma 5 grey levels, seeded per file (same image, same noise).

Shots (``--shots``, default 5, 10, 20, 50 per class) are drawn with ``--seed`` from the transformed
images of the NEU **train** split of ``--split-file``; accuracy is measured on the transformed images of
its **test** split (270). Both arms use the same recipe, ``edge-train --init`` (train/finetune.py:
line-strong augmentation, 20 % of the shots held out for early stopping): "from NEU" starts from
``--model`` (stem and blocks 1-2 frozen), "from scratch" from a randomly initialised compact model of the
same shape with nothing frozen. Note: the NEU model has seen the untransformed train images the shots
come from (never the test images).

Usage::

    python scripts/shots.py --model models/neu-compact/model.keras --data data/NEU-CLS \\
        --split-file models/neu-compact/split.csv --out runs/shots --json docs/results/shots.json \\
        --md docs/results/shots.md --plot docs/results/shots.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZE = 256
GAMMA, GAIN, GRADIENT = 0.8, 0.85, (0.8, 1.1)
NOISE_SIGMA = 5.0


def new_camera(img: np.ndarray, seed: int) -> np.ndarray:
    """The simulated new camera's view of one NEU image (uint8 200x200 -> uint8 256x256)."""
    import cv2

    x = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    x = cv2.rotate(x, cv2.ROTATE_90_CLOCKWISE).astype(np.float32) / 255.0
    x = GAIN * np.power(np.clip(x, 0, 1), GAMMA)
    x = x * np.linspace(GRADIENT[0], GRADIENT[1], SIZE, dtype=np.float32)[None, :]
    x = x * 255.0 + np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def build_camera_set(data: Path, split_file: Path, out: Path) -> Dict[str, Dict[str, List[Path]]]:
    """Transformed train and test images as ``out/{train,test}/<class>/<name>.png``; ``{split: {class: [paths]}}``."""
    import cv2

    from edge.data import read_gray

    sets: Dict[str, Dict[str, List[Path]]] = {"train": {}, "test": {}}
    for i, r in enumerate(csv.DictReader(open(split_file))):
        if r["split"] not in sets:
            continue
        dst = out / r["split"] / r["class"] / (Path(r["file"]).stem + ".png")
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            seed = int.from_bytes(r["file"].encode()[:8].ljust(8, b"\0"), "little") ^ 0x5EED
            cv2.imwrite(str(dst), new_camera(read_gray(data / r["file"]), seed))
        sets[r["split"]].setdefault(r["class"], []).append(dst)
    return sets


def scratch_model(like: Path, out: Path) -> Path:
    """A randomly initialised compact model with ``like``'s shape, preprocessing and classes, as a model folder."""
    import keras

    from edge.metadata import read_meta, write_meta
    from edge.preprocess import Preprocess
    from train.models import COMPACT_DEFAULT_POOL, build_compact

    meta = read_meta(like)
    prep = Preprocess.from_dict(meta["preprocess"])
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    m = build_compact(prep.input_shape, len(meta["classes"]), pool=COMPACT_DEFAULT_POOL)
    m.save(out / "model.keras")
    prep.save(out / "preprocess.json")
    write_meta(out / "model.keras", {**meta, "training": {"architecture": "compact", "init": "random"}})
    return out / "model.keras"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the NEU model (model.keras)")
    ap.add_argument("--data", required=True, help="NEU-CLS")
    ap.add_argument("--split-file", required=True)
    ap.add_argument("--out", required=True, help="work folder")
    ap.add_argument("--shots", default="5,10,20,50")
    ap.add_argument("--arms", default="neu,scratch", help="neu, scratch or both (in this order)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--md")
    ap.add_argument("--plot")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edge.fsutil import write_json, write_text
    from train import cli
    from train.evaluate import evaluate

    out = Path(args.out)
    cam = build_camera_set(Path(args.data), Path(args.split_file), out / "camera")
    shots = [int(s) for s in args.shots.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    scratch = scratch_model(Path(args.model), out / "scratch-init")
    rng = np.random.default_rng(args.seed)
    picks = {c: rng.permutation(len(v)).tolist() for c, v in sorted(cam["train"].items())}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    results = []
    for arm in arms:
        for n in shots:
            d = out / f"s{n}" / "data"
            for c, files in sorted(cam["train"].items()):
                (d / c).mkdir(parents=True, exist_ok=True)
                for j in picks[c][:n]:  # nested: the 10-shot set contains the 5-shot one
                    link = d / c / files[j].name
                    if not link.exists():
                        link.symlink_to(files[j].resolve())
            mdir = out / f"s{n}" / arm
            t0 = time.perf_counter()
            if not (mdir / "model.keras").is_file():
                argv2 = ["--init", str(args.model if arm == "neu" else scratch), "--data", str(d),
                         "--seed", str(args.seed), "--out", str(mdir), "--force"]
                if arm == "scratch":
                    argv2 += ["--freeze", "0"]
                if cli.main(argv2) != 0:
                    raise SystemExit(f"shots: training {arm} at {n} shots failed")
            secs = time.perf_counter() - t0
            rep = evaluate(mdir / "model.keras", out / "camera" / "test", "all")
            tr = json.loads((mdir / "report.json").read_text())["training"]
            results.append({"arm": arm, "shots": n, "test_accuracy": rep["accuracy"], "n_test": rep["n"],
                            "macro_f1": rep["macro_f1"], "epochs_run": tr["epochs_run"],
                            "held_out": tr["counts"]["val"], "seconds": round(secs, 1)})
            print(f"shots: {arm} {n}/class: new-camera test accuracy {rep['accuracy']:.4f} "
                  f"({tr['epochs_run']} epochs, {secs:.0f} s)", flush=True)
            report = {"settings": {"model": args.model, "seed": args.seed, "shots": shots, "cpu": cpu,
                                   "cores": os.cpu_count(), "camera": {
                                       "size": SIZE, "rotation": "90 clockwise", "gamma": GAMMA, "gain": GAIN,
                                       "gradient": list(GRADIENT), "noise_sigma": NOISE_SIGMA},
                                   "command": "python scripts/shots.py " + " ".join(
                                       argv if argv is not None else sys.argv[1:])},
                      "results": results}
            if args.json:
                write_json(args.json, report)
            if args.md:
                write_text(args.md, markdown(report))
            if args.plot:
                plot(report, args.plot)
    return 0


def markdown(report) -> str:
    s = report["settings"]
    lines = ["# Shots on a simulated new camera", "",
             f"Camera: NEU resized to {s['camera']['size']} px, rotated {s['camera']['rotation']}, gamma "
             f"{s['camera']['gamma']}, gain {s['camera']['gain']}, gradient {s['camera']['gradient']}, noise sigma "
             f"{s['camera']['noise_sigma']} (scripts/shots.py). Test: the 270 transformed NEU test-split images. "
             f"Seed {s['seed']}. Machine: {s['cpu']}, {s['cores']} cores, shared with other jobs.", "",
             f"Command: `{s['command']}`", "",
             "| start | shots / class | test accuracy | macro F1 | epochs | held out | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {'NEU model' if r['arm'] == 'neu' else 'scratch'} | {r['shots']} | "
                     f"{100 * r['test_accuracy']:.2f}% | {r['macro_f1']:.4f} | {r['epochs_run']} | {r['held_out']} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(report, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.fsutil import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for arm, label in (("neu", "from the NEU model"), ("scratch", "from scratch")):
        rs = sorted((r for r in report["results"] if r["arm"] == arm), key=lambda r: r["shots"])
        if rs:
            ax.plot([r["shots"] for r in rs], [100 * r["test_accuracy"] for r in rs], marker="o", label=label)
    ax.axhline(95, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xticks(report["settings"]["shots"])
    ax.set_xticklabels([str(s) for s in report["settings"]["shots"]])
    ax.set_xlabel("labelled tiles per class")
    ax.set_ylabel("new-camera test accuracy %")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
