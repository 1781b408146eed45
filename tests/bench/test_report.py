"""Report writers: JSON schema, Markdown tables, plots."""

import json

import numpy as np
import pytest

from bench import report as rep
from bench import stats
from bench.environment import environment, summary_lines

CLASSES = ["crazing", "inclusion"]


def _result(name, status="ok", acc=0.9, delta=-1.0, reason=""):
    lat = {b: stats.latency_stats(np.linspace(1, 2, 11) * int(b)) for b in ("1", "8")}
    return {
        "artifact": f"out/{name}", "format": "ONNX (fp32)", "backend": "onnxruntime", "precision": "fp32",
        "size_mb": 1.25, "latency_ms": lat,
        "latency_per_image_ms": {b: stats.scale_stats(s, int(b)) for b, s in lat.items()},
        "latency_parts_ms": {b: {"compute": s} for b, s in lat.items()},
        "throughput_ips": {"1": 666.0, "8": 1234.5}, "iterations": {"1": 11, "8": 11}, "unstable_batches": [],
        "accuracy": acc,
        "drift": {"accuracy_delta_pp": delta, "top1_agreement": 0.98, "max_abs_prob_diff": 0.01,
                  "mean_abs_prob_diff": 0.001, "kl": 1e-4, "per_class_f1_delta": {"crazing": -0.01, "inclusion": 0.0}},
        "confusion_matrix": [[5, 1], [0, 4]],
        "disagreements": [{"file": "Cr_1.bmp", "label": "crazing", "reference": "crazing", "reference_prob": 0.6,
                           "artifact": "inclusion", "artifact_prob": 0.55}],
        "status": status, "status_reason": reason,
        "_samples": {b: list(np.linspace(1, 2, 11) * int(b)) for b in ("1", "8")},
    }


@pytest.fixture
def report():
    failed = {"artifact": "out/model.fp16.engine", "format": "TensorRT", "backend": "tensorrt", "precision": "fp16",
              "size_mb": 2.0, "latency_ms": {}, "latency_per_image_ms": {}, "latency_parts_ms": {},
              "throughput_ips": {}, "iterations": {}, "unstable_batches": [], "accuracy": None, "drift": None,
              "confusion_matrix": None, "disagreements": [], "status": "failed",
              "status_reason": "TensorRT is not installed", "_samples": {}}
    return {
        "environment": environment(),
        "reference": {"model": "runs/m/model.keras", "accuracy": 0.91, "precision": "fp32", "size_mb": 3.0,
                      "images": 10, "confusion_matrix": [[6, 0], [0, 4]], "classes": CLASSES},
        "results": [_result("model.onnx"), _result("model.int8.onnx", "drift", 0.8, -11.0, "accuracy drop 11.00 pp > 1 pp"),
                    failed],
        "corruptions": {"seed": 0, "conditions": [
            {"corruption": "none", "severity": 0, "param": None, "reference_accuracy": 0.91,
             "results": {"out/model.onnx": {"accuracy": 0.9, "accuracy_delta_pp": -1.0, "top1_agreement": 0.98}}},
            {"corruption": "blur", "severity": 2, "param": 2.0, "reference_accuracy": 0.7,
             "results": {"out/model.onnx": {"accuracy": 0.6, "accuracy_delta_pp": -10.0, "top1_agreement": 0.8}}}]},
        "conventions": {"latency": "end-to-end"}, "settings": {"batches": [1, 8], "warmup": 2, "iterations": 11},
    }


def test_json_has_the_documented_schema_and_no_private_keys(tmp_path, report):
    p = rep.write_json_report(tmp_path / "b.json", report)
    data = json.loads(p.read_text())
    assert {"environment", "reference", "results"} <= set(data)
    assert {"model", "accuracy"} <= set(data["reference"])
    r0 = data["results"][0]
    assert {"artifact", "backend", "precision", "size_mb", "latency_ms", "throughput_ips", "accuracy", "drift",
            "status"} <= set(r0)
    assert set(r0["latency_ms"]["1"]) == {"min", "mean", "p50", "p90", "p95", "p99", "max", "cov"}
    assert set(r0["drift"]) == {"accuracy_delta_pp", "top1_agreement", "max_abs_prob_diff", "mean_abs_prob_diff",
                                "kl", "per_class_f1_delta"}
    assert r0["throughput_ips"]["8"] == 1234.5
    assert not any(k.startswith("_") for r in data["results"] for k in r)
    assert "_samples" in report["results"][0]          # the in-memory report is not changed


def test_markdown_rows_and_status(report):
    md = rep.markdown(report)
    table = rep.summary_table(report)
    lines = table.splitlines()
    assert lines[0].startswith("| Format | Precision | Size (MB) | Accuracy | Δ pp | Agreement | p50 ms (b1) | p99 ms (b1)")
    assert "img/s (b1)" in lines[0] and "img/s (b8)" in lines[0] and lines[0].endswith("Status |")
    assert len(lines) == 2 + 1 + 3                    # header, rule, reference, three artifacts
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    ok, drift, failed = lines[3], lines[4], lines[5]
    assert "✅" in ok and "90.00%" in ok and "-1.00" in ok and "98.00%" in ok and "1234.5" in ok
    p50 = stats.latency_stats(np.linspace(1, 2, 11))["p50"]
    assert f"{p50:.3f}" in ok
    assert "❎ accuracy drop 11.00 pp" in drift
    assert "❌ TensorRT is not installed" in failed
    assert "## Environment" in md and "## Latency (ms)" in md and "## Robustness under line-capture corruptions" in md
    assert "`Cr_1.bmp` (label crazing)" in md
    assert "| blur | 2 | 2 | 70.00% | 60.00% (-10.00, 80.0%) |" in md


def test_plots_are_png_files(tmp_path, report):
    paths = rep.write_plots(tmp_path / "plots", report)
    names = sorted(p.name for p in paths)
    assert names == ["confusion_matrices.png", "latency_cdf.png", "throughput.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.startswith(".")]   # no temp files left


def test_environment_block():
    env = environment()
    assert env["cores"] >= 1 and env["cpu"]
    assert "onnxruntime" in env["versions"] and env["versions"]["python"]
    text = "\n".join(summary_lines(env))
    assert "CPU:" in text and "TensorRT:" in text and "ONNX Runtime:" in text


def test_markdown_warns_when_the_machine_was_busy(report):
    report["environment"]["load_average"] = [9.5, 8.0, 7.0]
    report["environment"]["cores_usable"] = 2
    assert "load average 9.5 on 2 usable cores" in rep.markdown(report)
    report["environment"]["load_average"] = [0.5, 0.5, 0.5]
    assert "machine was busy" not in rep.markdown(report)


def test_latency_axis_has_labelled_ms_ticks():
    """The latency CDF's x axis can be read: several labelled ticks in ms, log or linear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bench.report import _ms_axis, ms_ticks

    assert ms_ticks(1.3, 25) == [1.5, 2, 3, 5, 7, 10, 15, 20]
    assert ms_ticks(0.3, 900) == [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]   # thinned to 1-2-5
    for lo, hi, scale in ((1.3, 25.0, "log"), (4.0, 9.5, "linear")):
        fig, ax = plt.subplots()
        x = np.linspace(lo, hi, 50)
        ax.plot(x, np.linspace(0, 1, 50))
        _ms_axis(ax, [x])
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        visible = [v for v, t in zip(ax.get_xticks(), ax.get_xticklabels()) if t.get_text() and lo <= v <= hi]
        assert ax.get_xscale() == scale and len(visible) >= 4, labels
        plt.close(fig)
