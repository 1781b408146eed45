"""bench.run_bench from Python (the linear fixtures of conftest.py), BenchConfig validation in parameter
names, and edge-bench --config."""

from __future__ import annotations

import json

import pytest

from bench import BenchConfig
from edge.errors import EdgeError


def test_run_bench_from_python(linear_models, sample_dir, tmp_path):
    from bench import run_bench

    d = linear_models
    rep = run_bench(BenchConfig(artifacts=[str(d / "model.onnx"), str(d / "model.rolled.onnx")],
                                references=[str(d / "model.keras")], data=str(sample_dir), iterations=2, warmup=0,
                                progress=False, fail_on_drift=1.0, json=str(tmp_path / "b.json")))
    exact, rolled = rep.report["results"]
    assert exact["status"] == "ok" and exact["drift"]["top1_agreement"] == 1.0
    assert rolled["drift"]["top1_agreement"] < 0.5
    assert not rep.passed and rep.gate_failures[0].startswith("model.rolled.onnx:")  # the gate, not an exception
    assert json.loads((tmp_path / "b.json").read_text())["settings"]["fail_on_drift"] == 1.0
    assert "model.onnx" in rep.table() and rep.failed == []


@pytest.mark.parametrize("kw, needle", [
    (dict(references=["r.keras"], data="d"), "give artifacts"),
    (dict(artifacts=["a.onnx"], references=["r.keras"], data="d", warmup=-1), "warmup must be >= 0, got -1"),
    (dict(artifacts=["a.onnx"], references=["r.keras"], data="d", fail_on_drift=-1.0), "fail_on_drift must be"),
    (dict(artifacts=["a.onnx"], references=["r.keras"], data="d", line_speed=2.0),
     "line capacity needs all of line_speed, strip_width and mm_per_px"),
    (dict(artifacts=["a.onnx"], references=["r.keras"], data="d"), "reference model r.keras does not exist"),
])
def test_bench_config_errors_name_the_parameters(kw, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeError) as ei:
        BenchConfig(**kw).validate()
    assert needle in str(ei.value) and "--" not in str(ei.value)


def test_edge_bench_config_file_then_flags(linear_models, sample_dir, tmp_path, capsys):
    from bench.cli import build_parser, config_from_args, main

    d = linear_models
    conf = tmp_path / "bench.toml"
    conf.write_text(f'[bench]\nartifacts = ["{d / "model.onnx"}"]\nreferences = ["{d / "model.keras"}"]\n'
                    f'data = "{sample_dir}"\nbatches = [1, 2]\niterations = 3\nwarmup = 0\njson = "out/b.json"\n')
    cfg = config_from_args(build_parser().parse_args(["--config", str(conf), "--batch", "4"]))
    assert (cfg.batches, cfg.iterations, cfg.json) == ([4], 3, str(tmp_path / "out" / "b.json"))
    (tmp_path / "out").mkdir()
    assert main(["--config", str(conf), "-q"]) == 0
    assert json.loads((tmp_path / "out" / "b.json").read_text())["settings"]["batches"] == [1, 2]
    conf.write_text("batches = 1\n")
    assert main(["--config", str(conf)]) == 2
    assert "batches must be a list of integers, got 1" in capsys.readouterr().err
