"""edge-train + edge-eval end to end on the embedded sample (tiny input, few epochs), and their bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from edge.data import load_dataset, read_split_csv  # noqa: E402
from edge.metadata import read_meta  # noqa: E402
from edge.preprocess import Preprocess  # noqa: E402
from train import cli, evaluate  # noqa: E402

REPORT_KEYS = {"accuracy", "macro_f1", "roc_auc_ovr", "per_class", "confusion_matrix", "classes", "n", "model", "data"}
OUT_FILES = {"model.keras", "model.keras.json", "preprocess.json", "classes.json", "split.csv", "report.json",
             "confusion_matrix.png", "curves.png", "history.csv"}


def test_train_writes_the_model_folder(trained, sample_dir, capsys):
    assert OUT_FILES <= {p.name for p in trained.iterdir()}
    assert not [p for p in trained.parent.iterdir() if p.name.startswith(".")], "no staging folder left"
    prep = Preprocess.load(trained / "preprocess.json")
    assert prep == Preprocess(48, 48, 1, "unit", "area")
    assert json.loads((trained / "classes.json").read_text()) == load_dataset(sample_dir).classes
    meta = read_meta(trained / "model.keras")
    assert (meta["format"], meta["backend"], meta["precision"]) == ("keras", "keras", "fp32")
    assert meta["input"]["shape"] == [-1, 48, 48, 1] and meta["output"]["shape"] == [-1, 6]
    split = read_split_csv(trained / "split.csv", load_dataset(sample_dir))
    assert len(split) == 60
    rep = json.loads((trained / "report.json").read_text())
    assert REPORT_KEYS <= set(rep)
    assert rep["n"] == sum(v == "test" for v in split.values())
    assert np.array(rep["confusion_matrix"]).sum() == rep["n"]
    assert rep["training"]["seed"] == 3 and rep["training"]["epochs_run"] == 4
    assert rep["training"]["schedule"]["label_smoothing"] == 0.1   # recipe v5's default
    assert rep["training"]["params"]["total"] <= 500_000
    hist = (trained / "history.csv").read_text().splitlines()
    assert hist[0].startswith("epoch,phase,") and len(hist) == 5
    for png in ("confusion_matrix.png", "curves.png"):
        assert (trained / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reproduces_the_training_report(trained, sample_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = evaluate.main([str(trained / "model.keras"), "--data", str(sample_dir), "--json", str(out),
                        "--plots", str(tmp_path / "plots")])
    assert rc == 0
    rep = json.loads(out.read_text())
    train_rep = json.loads((trained / "report.json").read_text())
    assert REPORT_KEYS <= set(rep)
    # Same model, same split.csv (found beside the model): same predictions on the same test files.
    assert rep["split_file"] == str(trained / "split.csv")
    assert rep["confusion_matrix"] == train_rep["confusion_matrix"]
    assert rep["accuracy"] == pytest.approx(train_rep["accuracy"])
    assert rep["roc_auc_ovr"] == pytest.approx(train_rep["roc_auc_ovr"], abs=1e-4)
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()
    assert "test accuracy" in capsys.readouterr().out

    rc = evaluate.main([str(trained / "model.keras"), "--data", str(sample_dir), "--split", "all",
                        "--json", str(out)])
    assert rc == 0
    assert json.loads(out.read_text())["n"] == 60


def test_eval_on_other_data_needs_split_all(trained, sample_dir, tmp_path, capsys):
    import shutil

    for p in sorted(sample_dir.glob("Sc_*.bmp"))[:3]:
        d = tmp_path / "mine" / "scratches"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / ("x" + p.name))
    rc = evaluate.main([str(trained / "model.keras"), "--data", str(tmp_path / "mine")])
    err = capsys.readouterr().err
    assert rc == 2 and "--split all" in err and len(err.strip().splitlines()) == 1
    rc = evaluate.main([str(trained / "model.keras"), "--data", str(tmp_path / "mine"), "--split", "all",
                        "--json", str(tmp_path / "mine.json")])
    rep = json.loads((tmp_path / "mine.json").read_text())
    assert rc == 0 and rep["n"] == 3 and rep["roc_auc_ovr"] is None and rep["per_class"]["scratches"]["support"] == 3


def test_two_phase_backbone_end_to_end(sample_dir, tmp_path):
    from train.models import build_base

    local = tmp_path / "mnv2_notop.weights.h5"  # stands in for a local ImageNet file (offline plant)
    build_base("mobilenetv2", (32, 32, 3), None).save_weights(local)
    out = tmp_path / "mnv2"
    rc = cli.main(["--data", str(sample_dir), "--model", "mobilenetv2", "--weights", str(local), "--input-size", "32",
                   "--epochs", "1", "--fine-tune-epochs", "1", "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    phases = rep["training"]["phases"]
    assert [p["phase"] for p in phases] == ["phase1", "phase2"]
    assert phases[1]["trainable_params"] > phases[0]["trainable_params"]
    assert Preprocess.load(out / "preprocess.json") == Preprocess(32, 32, 3, "symmetric", "area")
    assert (out / "history.csv").read_text().count("phase2") == 1


def test_backbone_from_scratch_end_to_end(sample_dir, tmp_path, monkeypatch):
    # --weights none: one end-to-end phase (every layer trainable, warm-up + cosine), not the two-phase protocol
    from train import recipe

    seen = []   # the label smoothing the loss is compiled with (--label-smoothing 0 instead of the default 0.1)
    compile_model = recipe.compile_model
    monkeypatch.setattr(recipe, "compile_model", lambda m, o, ls=0.0: (seen.append(ls), compile_model(m, o, ls)))
    out = tmp_path / "r50"
    rc = cli.main(["--data", str(sample_dir), "--model", "resnet50v2", "--weights", "none", "--input-size", "32",
                   "--epochs", "2", "--batch-size", "16", "--label-smoothing", "0", "--out", str(out)])
    assert rc == 0
    tr = json.loads((out / "report.json").read_text())["training"]
    assert seen == [0.0] and tr["schedule"]["label_smoothing"] == 0.0
    assert tr["recipe"] == "from-scratch" and tr["weights"] == "none" and tr["fine_tune_epochs"] is None
    assert [p["phase"] for p in tr["phases"]] == ["scratch"] and tr["epochs_run"] == 2
    assert tr["phases"][0]["trainable_params"] == tr["params"]["trainable"] > 0.99 * tr["params"]["total"]
    assert tr["schedule"]["decay"] == "cosine" and tr["lr"] == 2e-3
    assert tr["augment"]["line_capture"] is not None  # the project's line-capture augmentation by default
    assert Preprocess.load(out / "preprocess.json") == Preprocess(32, 32, 3, "symmetric", "area")
    assert read_meta(out / "model.keras")["training"]["weights"] == "none"


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("edge-")
    for n in needles:
        assert n in err, err


def test_train_bad_inputs(sample_dir, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--model", "compact", "--out", str(out)]
    _one_line_error(capsys, cli.main(["--data", str(tmp_path / "missing"), *base]), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, cli.main(["--data", str(empty), *base]), "empty")
    one = tmp_path / "one" / "scratches"             # one class: nothing to tell apart, refused before training
    one.mkdir(parents=True)
    for f in sorted(sample_dir.glob("Sc_*.bmp"))[:4]:
        (one / f.name).write_bytes(f.read_bytes())
    _one_line_error(capsys, cli.main(["--data", str(tmp_path / "one"), *base]), "at least 2 classes")
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--epochs", "0", *base]), "--epochs")
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--batch-size", "0", *base]), "--batch-size")
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--weights", str(tmp_path / "w.h5"), *base]),
                    "w.h5")
    # the weights file is checked before the data is read (compact as well as the backbones)
    _one_line_error(capsys, cli.main(["--data", str(tmp_path / "missing"), "--weights", str(tmp_path / "w.h5"), *base]),
                    "w.h5")
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--input-size", "8", *base]), "too small")
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--model", "mobilenetv2", "--weights", "imagenet",
                                      "--pool", "avgmax", "--out", str(out)]), "--pool avgmax", "compact only")
    # no random two-phase base (issue 15, part 4): nasnetmobile has no from-scratch recipe
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--model", "nasnetmobile", "--weights", "none",
                                      "--out", str(out)]), "nasnetmobile", "--weights PATH", "--model compact")
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--model", "mobilenetv2", "--weights", "none",
                                      "--fine-tune-epochs", "2", "--out", str(out)]), "--fine-tune-epochs", "--epochs")
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), "--label-smoothing", "1", *base]),
                    "--label-smoothing must be in [0, 1), got 1.0")
    # the two-phase protocol has no label smoothing: refused before the data is read
    _one_line_error(capsys, cli.main(["--data", str(tmp_path / "missing"), "--model", "mobilenetv2", "--weights",
                                      "imagenet", "--label-smoothing", "0", "--out", str(out)]),
                    "--label-smoothing", "two-phase")
    assert not out.exists()
    out.mkdir()
    _one_line_error(capsys, cli.main(["--data", str(sample_dir), *base]), "--force")
    with pytest.raises(SystemExit) as ei:
        cli.main(["--data", str(sample_dir), "--model", "vgg", "--out", str(out)])
    assert ei.value.code == 2


def test_train_imagenet_offline(sample_dir, tmp_path, capsys, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*a, **k):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- network unreachable")

    monkeypatch.setattr(file_utils, "get_file", offline)
    out = tmp_path / "o"
    rc = cli.main(["--data", str(sample_dir), "--model", "mobilenetv2", "--input-size", "32", "--out", str(out)])
    _one_line_error(capsys, rc, "--weights PATH", "--model compact")
    assert not out.exists() and not list(tmp_path.glob(".o.*")), "nothing half-written"


def test_eval_bad_inputs(trained, sample_dir, tmp_path, capsys):
    m = str(trained / "model.keras")
    _one_line_error(capsys, evaluate.main([str(tmp_path / "nope.keras"), "--data", str(sample_dir)]), "does not exist")
    _one_line_error(capsys, evaluate.main([m, "--data", str(tmp_path / "nodata")]), "does not exist")
    _one_line_error(capsys, evaluate.main([m, "--data", str(sample_dir), "--split-file", str(tmp_path / "s.csv")]),
                    "s.csv")
    _one_line_error(capsys, evaluate.main([m, "--data", str(sample_dir), "--batch", "0"]), "--batch")
    blocker = tmp_path / "plots-file"
    blocker.write_text("x")                            # --plots into an unwritable place: refused before the run
    _one_line_error(capsys, evaluate.main([m, "--data", str(sample_dir), "--plots", str(blocker)]), "not a folder")
    _one_line_error(capsys, evaluate.main([m, "--data", str(sample_dir), "--plots", str(blocker / "sub")]),
                    "not writable")
    import shutil

    swapped = tmp_path / "swapped"                     # metadata classes permuted against the model's classes.json
    shutil.copytree(trained, swapped)
    meta = json.loads((swapped / "model.keras.json").read_text())
    meta["classes"] = meta["classes"][1:] + meta["classes"][:1]
    (swapped / "model.keras.json").write_text(json.dumps(meta))
    _one_line_error(capsys, evaluate.main([str(swapped / "model.keras"), "--data", str(sample_dir)]),
                    "another order")


def test_metrics_report_against_counts():
    classes = ["a", "b", "c"]
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 2, 0, 2])
    rng = np.random.default_rng(0)
    probs = rng.random((8, 3)) * 0.3
    probs[np.arange(8), pred] += 1.0
    probs /= probs.sum(1, keepdims=True)
    rep = evaluate.metrics_report(y, probs, classes)
    cm = np.zeros((3, 3), int)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    assert rep["confusion_matrix"] == cm.tolist()
    assert rep["accuracy"] == pytest.approx(np.trace(cm) / 8)
    for i, c in enumerate(classes):
        prec, rec = cm[i, i] / cm[:, i].sum(), cm[i, i] / cm[i].sum()
        assert rep["per_class"][c]["precision"] == pytest.approx(prec)
        assert rep["per_class"][c]["recall"] == pytest.approx(rec)
        assert rep["per_class"][c]["f1"] == pytest.approx(2 * prec * rec / (prec + rec))
        assert rep["per_class"][c]["support"] == cm[i].sum()
    assert rep["macro_f1"] == pytest.approx(np.mean([rep["per_class"][c]["f1"] for c in classes]))
    assert 0.5 < rep["roc_auc_ovr"] <= 1.0 and rep["n"] == 8 and rep["classes"] == classes
    true_p = probs[np.arange(8), y]
    assert rep["log_loss"] == pytest.approx(-np.log(true_p).mean())
    assert rep["min_true_prob"] == pytest.approx(true_p.min())
    with pytest.raises(Exception, match="expected 3"):
        evaluate.metrics_report(y, probs[:, :2], classes)


def test_same_seed_same_model(sample_dir, tmp_path):
    from edge.runtime.keras.runner import load_keras_model

    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert cli.main(["--data", str(sample_dir), "--model", "compact", "--epochs", "2", "--input-size", "32",
                         "--seed", "5", "--out", str(out)]) == 0
        outs.append(load_keras_model(out / "model.keras"))
    for wa, wb in zip(outs[0].weights, outs[1].weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
