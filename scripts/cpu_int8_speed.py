"""Why the CPU int8 runner classifies what it does on this machine: runner modes and artifact forms A/B, per-operator profile.

Bare runner (``runner.infer``) on the same uint8 tile batches (frames of ``--frames`` cut into 200 px
tiles, ``--batch`` per call), cases interleaved round by round (order reversed every other round, so
all see the same machine load), for each case tiles/s and process CPU ms per tile (all threads; the
figure that depends least on how much of a shared machine the run got):

* ``intra-op``: one session, onnxruntime's intra-op threads over the cores (the runner's default
  before ``split``);
* ``split``: the batch split into one part per core, each part run at once in a session with one
  intra-op thread (the runner's default now);
* ``split + float stem``: the same with the ``--float-stem`` artifact (``--int8-cpu-format
  qdq-u8s8-pc-fs``: the one-channel stem convolution left in float).

Then a per-operator profile of each artifact with onnxruntime's profiler (one thread, per node the
minimum over ``--profile-runs`` runs: the node's own cost with the least interference), grouped by
operator type, with each convolution's multiply-adds and the rate it reaches; and the outputs of
``split`` against ``intra-op`` (they must be identical).

Example:
    python scripts/cpu_int8_speed.py --uint8 runs/convert-compact-u8/model.int8cpu.onnx \\
        --float-stem runs/convert-compact-u8fs/model.int8cpu.onnx --frames runs/line-tp/frames.npy \\
        -o docs/results/cpu-int8-speed.json --md docs/results/cpu-int8-speed.md
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/NAME.py` from anywhere
    sys.path.insert(0, str(ROOT))

from edge.errors import EdgeError, cli_entry  # noqa: E402

PROG = "cpu_int8_speed"


def tile_batches(frames_npy: str, tile: int, batch: int, limit: int) -> List[np.ndarray]:
    """uint8 (batch, tile, tile, 1) batches from the first ``limit`` frames of a raw recording."""
    frames = np.load(frames_npy, mmap_mode="r")
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise EdgeError(f"{frames_npy}: expected a uint8 N x H x W array, got {frames.dtype} {frames.shape}")
    n, h, w = frames.shape
    rows, cols = h // tile, w // tile
    if not rows or not cols:
        raise EdgeError(f"{frames_npy}: frames of {h}x{w} hold no {tile} px tile")
    f = np.asarray(frames[:limit, :rows * tile, :cols * tile])
    tiles = f.reshape(len(f), rows, tile, cols, tile).transpose(0, 1, 3, 2, 4).reshape(-1, tile, tile, 1)
    return [np.ascontiguousarray(tiles[i:i + batch]) for i in range(0, len(tiles), batch)]


def conv_macs(model_path: str) -> Dict[str, int]:
    """Multiply-adds per input image of each Conv node of an ONNX model (by node name)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load(model_path))
    g = m.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(g.value_info) + list(g.output) + list(g.input)}
    inits = {i.name: numpy_helper.to_array(i).shape for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for n in g.node:
        if n.op_type != "Conv":
            continue
        w = inits.get(n.input[1])
        if w is None and n.input[1] in producer:   # Q/DQ weights: DequantizeLinear(quantized initializer)
            w = inits.get(producer[n.input[1]].input[0])
        y = shapes.get(n.output[0])
        if w is None or not y or len(y) != 4:
            continue
        cout, cin_g, kh, kw = w[:4]
        out[n.name] = int(cout * cin_g * kh * kw * y[2] * y[3])
    return out


def op_profile(path: str, batch: np.ndarray, runs: int) -> Dict:
    """Per-node kernel time (µs, minimum and median over ``runs``), one intra-op thread, level all."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"cpu-int8-speed-{os.getpid()}")
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    warm = 5
    for _ in range(warm + runs):
        s.run(None, {name: batch})
    f = s.end_profiling()
    events = json.loads(Path(f).read_text())
    Path(f).unlink()
    per, ops = collections.defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            n = e["name"][:-len("_kernel_time")]
            per[n].append(e["dur"])
            ops[n] = e["args"].get("op_name", "?")
    nodes = {n: {"op": ops[n], "min_us": min(v[warm:]), "median_us": float(np.median(v[warm:]))}
             for n, v in per.items() if len(v) > warm}
    groups = collections.defaultdict(float)
    for n, d in nodes.items():
        groups["resize + scale in the graph (fold_*)" if n.startswith("fold") else d["op"]] += d["min_us"]
    total = sum(d["min_us"] for d in nodes.values())
    return {"batch": len(batch), "runs": runs, "sum_min_ms": round(total / 1e3, 3),
            "ms_per_tile_one_core": round(total / 1e3 / len(batch), 4),
            "groups_ms": {g: round(v / 1e3, 3) for g, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "nodes": dict(sorted(nodes.items(), key=lambda kv: -kv[1]["min_us"]))}


def conv_rates(prof: Dict, macs: Dict[str, int], batch: int) -> List[Dict]:
    """Each convolution's kernel time and GMAC/s (multiply-adds from the float model, matched by the
    ONNX node name onnxruntime's node names start with)."""
    rows = []
    for n, d in prof["nodes"].items():
        if d["op"] not in ("QLinearConv", "Conv"):
            continue
        src = next((k for k in macs if n.startswith(k)), None)
        if src is None:
            continue
        rows.append({"node": n, "op": d["op"], "min_ms": round(d["min_us"] / 1e3, 3), "mmacs_per_tile": round(macs[src] / 1e6, 2),
                     "gmac_per_s": round(macs[src] * batch / (d["min_us"] * 1e-6) / 1e9, 1)})
    return sorted(rows, key=lambda r: r["node"])


def kernel_peak(cin: int = 256, cout: int = 256, hw: int = 40, batch: int = 1, runs: int = 100) -> Dict:
    """Multiply-adds per second of onnxruntime's int8 convolution on one core for a large 3x3 layer
    (uint8 activations, per-channel int8 weights, Relu, as in the CPU int8 artifacts): the practical
    ceiling of the kernel the model's convolutions run on."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper as h, numpy_helper as nh

    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.integers(-63, 64, (cout, cin, 3, 3)).astype(np.int8), "wq"),
             nh.from_array(np.full(cout, 0.01, np.float32), "ws"), nh.from_array(np.zeros(cout, np.int8), "wz"),
             nh.from_array(np.array(0.02, np.float32), "xs"), nh.from_array(np.array(0, np.uint8), "xz"),
             nh.from_array(np.array(0.05, np.float32), "ys"), nh.from_array(np.array(0, np.uint8), "yz")]
    nodes = [h.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wf"], axis=0),
             h.make_node("Conv", ["xf", "wf"], ["yf"], pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["yf"], ["yr"]),
             h.make_node("QuantizeLinear", ["yr", "ys", "yz"], ["y"])]
    g = h.make_graph(nodes, "peak", [h.make_tensor_value_info("x", TensorProto.UINT8, [None, cin, hw, hw])],
                     [h.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = rng.integers(0, 256, (batch, cin, hw, hw)).astype(np.uint8)
    for _ in range(3):
        s.run(None, {"x": x})
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, {"x": x})
        best = min(best, time.perf_counter() - t0)
    macs = batch * cout * cin * 9 * hw * hw
    return {"layer": f"{cin}->{cout} channels, 3x3, {hw}x{hw}, batch {batch}", "min_ms": round(best * 1e3, 3),
            "gmac_per_s": round(macs / best / 1e9, 1)}


def levels(path: str, batch: np.ndarray, rounds: int = 30) -> Dict[str, float]:
    """Minimum ms per batch on one thread at onnxruntime's graph optimization levels (interleaved rounds)."""
    import onnxruntime as ort

    lv = ort.GraphOptimizationLevel
    sessions = {}
    for name, level in (("all", lv.ORT_ENABLE_ALL), ("extended", lv.ORT_ENABLE_EXTENDED), ("basic", lv.ORT_ENABLE_BASIC)):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        so.graph_optimization_level = level
        sessions[name] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed_name = sessions["all"].get_inputs()[0].name
    best = {k: float("inf") for k in sessions}
    for k in range(rounds + 1):
        for name, s in (sessions.items() if k % 2 == 0 else list(sessions.items())[::-1]):
            t0 = time.perf_counter()
            s.run(None, {feed_name: batch})
            if k:   # the first round warms up
                best[name] = min(best[name], time.perf_counter() - t0)
    return {k: round(v * 1e3, 3) for k, v in best.items()}


def measure(cases, batches, rounds: int) -> Dict[str, Dict]:
    from edge.runtime import load_runner

    tiles = sum(len(b) for b in batches)
    res = {label: {"artifact": str(path), "opts": opts, "tiles_per_s": [], "cpu_ms_per_tile": []}
           for label, path, opts in cases}
    runners = {label: load_runner(path, **opts) for label, path, opts in cases}
    try:
        for r in runners.values():
            r.activate()
            for b in batches[:3]:
                r.infer(b)
        for label, r in runners.items():
            res[label]["parts"] = getattr(r, "parts", 1)
        outs = {label: np.concatenate([r.infer(b) for b in batches]) for label, r in runners.items()}
        for k in range(rounds):
            order = list(runners) if k % 2 == 0 else list(runners)[::-1]
            for label in order:
                r = runners[label]
                t0, c0 = time.perf_counter(), time.process_time()
                for b in batches:
                    r.infer(b)
                res[label]["tiles_per_s"].append(round(tiles / (time.perf_counter() - t0), 1))
                res[label]["cpu_ms_per_tile"].append(round((time.process_time() - c0) * 1e3 / tiles, 4))
    finally:
        for r in runners.values():
            r.deactivate()
    first = next(iter(res))
    for label, d in res.items():
        d["tiles_per_s_median"] = round(statistics.median(d["tiles_per_s"]), 1)
        d["cpu_ms_per_tile_median"] = round(statistics.median(d["cpu_ms_per_tile"]), 4)
        d["paired_ratio_to_first"] = round(statistics.median(
            a / b for a, b in zip(d["tiles_per_s"], res[first]["tiles_per_s"])), 3)
        d["cpu_ratio_to_first"] = round(statistics.median(
            a / b for a, b in zip(d["cpu_ms_per_tile"], res[first]["cpu_ms_per_tile"])), 3)
        d["max_abs_diff_vs_first"] = float(np.abs(outs[label] - outs[first]).max())
        d["top1_agreement_vs_first"] = float((outs[label].argmax(1) == outs[first].argmax(1)).mean())
    return res


def markdown(res: Dict) -> str:
    cores = res["machine"]["cores"]
    L = ["# CPU int8 runner: runner modes, artifact forms and where the time goes (issue 14)", "",
         f"Measured {res['when']} on {res['machine']['cpu']} ({cores} cores; AVX-512 VNNI: "
         f"{res['machine']['avx512_vnni']}), onnxruntime {res['machine']['onnxruntime']}, {res['load_note']}; "
         f"{res['tiles']} tiles of 200 px (uint8, {res['batch']} per call), {res['rounds']} interleaved rounds. "
         f"Source: `scripts/cpu_int8_speed.py` → `{res.get('output', 'the JSON')}`.", "",
         "| case | artifact | parts per batch | tiles/s (median) | paired ratio to the first | CPU ms per tile (all threads) | "
         "CPU ratio to the first | outputs vs the first |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for label, d in res["cases"].items():
        same = ("identical" if d["max_abs_diff_vs_first"] == 0 else
                f"max abs prob diff {d['max_abs_diff_vs_first']:.2e}, top-1 agreement {100 * d['top1_agreement_vs_first']:.2f} %")
        L.append(f"| {label} | `{Path(d['artifact']).parent.name}/{Path(d['artifact']).name}` | {d['parts']} | "
                 f"{d['tiles_per_s_median']:,.0f} | {d['paired_ratio_to_first']} | {d['cpu_ms_per_tile_median']:.3f} | "
                 f"{d['cpu_ratio_to_first']} | {same} |")
    L += ["", f"Per-operator profile, one thread, batch {res['batch']} (onnxruntime's profiler, each node's minimum over "
          f"{res['profile_runs']} runs; ms per batch):", ""]
    profs = res["profiles"]
    groups = list(dict.fromkeys(g for p in profs.values() for g in p["groups_ms"]))
    L += ["| operator | " + " | ".join(profs) + " |", "|---|" + "---:|" * len(profs)]
    for g in groups:
        L.append(f"| {g} | " + " | ".join(f"{p['groups_ms'].get(g, 0):.3f}" for p in profs.values()) + " |")
    L.append("| **sum (ms per batch) → ms per tile on one core** | " + " | ".join(
        f"**{p['sum_min_ms']:.2f} → {p['ms_per_tile_one_core']:.3f}**" for p in profs.values()) + " |")
    L.append(f"| **{cores} cores, perfectly parallel, nothing else running: tiles/s** | " + " | ".join(
        f"**{cores / p['ms_per_tile_one_core'] * 1e3:,.0f}**" for p in profs.values()) + " |")
    L += ["", "Convolutions (multiply-adds per tile from the ONNX model, rate at the node's minimum time):", "",
          "| artifact | node | kernel | M multiply-adds per tile | ms per batch | GMAC/s |", "|---|---|---|---:|---:|---:|"]
    for label, rows in res["conv_rates"].items():
        for r in rows:
            L.append(f"| {label} | {r['node']} | {r['op']} | {r['mmacs_per_tile']} | {r['min_ms']:.3f} | {r['gmac_per_s']} |")
    lvs = res.get("levels_ms_per_batch")
    if lvs:
        L += ["", "onnxruntime graph optimization level, one thread, minimum ms per batch of "
              f"{res['batch']} over 30 interleaved rounds (the runner uses *all* for these artifacts; their gate measured *all*):", "",
              "| artifact | all | extended | basic |", "|---|---:|---:|---:|"]
        for label, v in lvs.items():
            L.append(f"| {label} | {v['all']:.2f} | {v['extended']:.2f} | {v['basic']:.2f} |")
    pk = res.get("kernel_peak")
    if pk:
        L += ["", f"Reference: onnxruntime's int8 convolution on one core for a large layer ({pk['layer']}, "
              f"uint8 × per-channel int8, Relu): **{pk['gmac_per_s']} GMAC/s**, the practical ceiling of the kernel "
              "the model's convolutions run on."]
    L.append("")
    return "\n".join(L)


@cli_entry(PROG)
def main(argv=None) -> int:
    import onnxruntime as ort

    from bench.environment import cpu_model
    from edge.fsutil import write_json, write_text

    ap = argparse.ArgumentParser(PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--uint8", required=True, help="CPU int8 artifact taking uint8 tiles (edge-convert's default form)")
    ap.add_argument("--float-stem", help="the same with the stem in float (--int8-cpu-format qdq-u8s8-pc-fs)")
    ap.add_argument("--frames", required=True, help="raw recording (N x H x W uint8 .npy), e.g. runs/line-tp/frames.npy")
    ap.add_argument("--tile", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames-limit", type=int, default=100, help="frames used (16 tiles each for NEU lines)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--profile-runs", type=int, default=30)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--md")
    a = ap.parse_args(argv)
    batches = tile_batches(a.frames, a.tile, a.batch, a.frames_limit)
    cases = [("intra-op", a.uint8, {"split": 1}), ("split", a.uint8, {})]
    arts = {"int8 stem": a.uint8}
    if a.float_stem:
        cases += [("split + float stem", a.float_stem, {})]
        arts["float stem"] = a.float_stem
    load0 = [round(v, 2) for v in os.getloadavg()]
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "batch": a.batch, "rounds": a.rounds,
           "tiles": sum(len(b) for b in batches), "profile_runs": a.profile_runs,
           "machine": {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                       else os.cpu_count(), "onnxruntime": ort.__version__,
                       "avx512_vnni": "avx512_vnni" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None},
           "loadavg_before": load0, "output": a.output}
    res["cases"] = measure(cases, batches, a.rounds)
    res["profiles"], res["conv_rates"] = {}, {}
    for label, path in arts.items():
        res["profiles"][label] = op_profile(path, batches[0], a.profile_runs)
        # multiply-adds: from the float FP32 model beside the artifact when there is one (same node names)
        f32 = Path(path).with_name("model.onnx")
        res["conv_rates"][label] = conv_rates(res["profiles"][label], conv_macs(str(f32 if f32.exists() else path)),
                                              a.batch)
    res["levels_ms_per_batch"] = {label: levels(path, batches[0]) for label, path in arts.items()}
    for label, v in res["levels_ms_per_batch"].items():
        print(f"graph optimization level, {label}, one thread, ms per batch: " + ", ".join(f"{k} {x}" for k, x in v.items()))
    res["kernel_peak"] = kernel_peak()
    print(f"onnxruntime int8 conv, one core, {res['kernel_peak']['layer']}: {res['kernel_peak']['gmac_per_s']} GMAC/s")
    res["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    res["load_note"] = f"load average {res['loadavg_before'][0]} → {res['loadavg_after'][0]}"
    for label, d in res["cases"].items():
        print(f"{label}: {d['tiles_per_s_median']:,.0f} tiles/s (paired ratio {d['paired_ratio_to_first']}), "
              f"CPU {d['cpu_ms_per_tile_median']:.3f} ms/tile (ratio {d['cpu_ratio_to_first']}), "
              f"max abs diff vs first {d['max_abs_diff_vs_first']:.2e}")
    for label, p in res["profiles"].items():
        print(f"profile {label}: {p['sum_min_ms']:.2f} ms per batch of {a.batch} on one core "
              f"({p['ms_per_tile_one_core']:.3f} ms/tile): " + ", ".join(f"{g} {v:.2f}" for g, v in p["groups_ms"].items()))
    print(res["load_note"])
    write_json(a.output, res)
    if a.md:
        write_text(a.md, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
