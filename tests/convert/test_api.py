"""The converter's Python API (convert.convert_model / ConvertConfig / ConvertResult) and the thin
edge-convert over it: errors in parameter names from Python, in flags from the command; --config FILE."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

from convert import ConvertConfig, ConvertResult, convert_model  # noqa: E402
from convert.cli import build_parser, config_from, main  # noqa: E402
from edge.errors import EdgeError, GateFailed, InputError  # noqa: E402
from edge.formats import CALIB_RECORD, by_name  # noqa: E402
from edge.metadata import read_meta  # noqa: E402


def test_import_convert_does_not_import_tensorflow():
    code = "import sys, convert; convert.ConvertConfig; print('tensorflow' in sys.modules, 'onnxruntime' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_convert_model_from_python(tiny_model, sample_dir, tmp_path, caplog):
    out = tmp_path / "o"
    cfg = ConvertConfig(out=str(out), int8=True, calib_data=str(sample_dir), calib_size=12, max_drift=100,
                        min_agreement=0, gate_views=1)
    with caplog.at_level("INFO", logger="convert"):
        res = convert_model(tiny_model, cfg)
    assert isinstance(res, ConvertResult) and res.out == out and res.passed and res.gate_failure() is None
    assert res.written == ["model.onnx", CALIB_RECORD, "model.int8.onnx"]
    assert res.paths["int8"] == out / by_name("int8").file and res.paths["calibration"] == out / CALIB_RECORD
    assert all(p.is_file() for p in res.paths.values())
    meta = res.metadata["model.int8.onnx"]
    assert meta == read_meta(out / "model.int8.onnx")
    assert (meta["format"], meta["backend"], meta["precision"]) == ("onnx", "onnxruntime", "int8")
    assert meta["onnxruntime"]["graph_optimization_level"] == by_name("int8").ort_level == "basic"
    assert res.gates["int8"].as_dict() == meta["drift_gate"]
    assert meta["calibration"]["method"] == "entropy"      # no calib_method, no open-set score: entropy ranges
    assert any(m.startswith("model.onnx: FP32 ONNX vs Keras") for m in caplog.messages)  # progress: logging


@pytest.mark.parametrize("kwargs, message, flag_message", [
    ({"max_batch": 0}, "max_batch must be at least 1, got 0", "--max-batch must be at least 1, got 0"),
    ({"int8": True}, "int8/int8_cpu need calibration images: pass calib_data",
     "--int8/--int8-cpu need calibration images: pass --calib-data"),
    ({"batch": "4"}, "batch must be 1 or dynamic", "--batch must be 1 or dynamic"),
    ({"min_agreement": 101}, "min_agreement must be a percentage", "--min-agreement must be a percentage"),
    ({"uint8_tiles": "big"}, "uint8_tiles takes a tile size", "--uint8-tiles takes a tile size"),
    ({"engine": "sometimes"}, "engine must be one of auto, always, never", "--engine must be one of"),
    ({"calib_method": "kl"}, "calib_method must be one of entropy, minmax, percentile, got 'kl'",
     "--calib-method must be one of entropy, minmax, percentile"),
])
def test_bad_settings_name_the_parameter_in_python_and_the_flag_in_the_command(
        tiny_model, tmp_path, capsys, kwargs, message, flag_message):
    with pytest.raises(InputError) as e:
        convert_model(tiny_model, ConvertConfig(out=str(tmp_path / "o"), **kwargs))
    assert message in str(e.value) and "--" not in str(e.value)
    argv = [str(tiny_model), "-o", str(tmp_path / "o")]
    for k, v in kwargs.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    if kwargs.keys() & {"engine", "calib_method"}:   # argparse's own choices check comes first for a flag: go through a config file
        (tmp_path / "c.toml").write_text("".join(f'{k} = "{v}"\n' for k, v in kwargs.items()))
        argv = [str(tiny_model), "-o", str(tmp_path / "o"), "--config", str(tmp_path / "c.toml")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag_message in err, err
    assert not (tmp_path / "o").exists()


def test_existing_output_names_force_as_parameter_and_flag(tiny_model, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    with pytest.raises(InputError, match=r"use force=True to replace it"):
        convert_model(tiny_model, ConvertConfig(out=str(tmp_path / "o")))
    assert main([str(tiny_model), "-o", str(tmp_path / "o")]) == 2
    assert "(use --force to replace it)" in capsys.readouterr().err


def test_config_file_between_defaults_and_flags(tmp_path):
    f = tmp_path / "sub" / "convert.toml"
    f.parent.mkdir()
    f.write_text('[convert]\nint8 = true\ncalib-data = "data"\ncalib_size = 64\nmax_drift = 1\nuint8_tiles = 200\n')
    cfg = config_from({"config": str(f), "calib_size": 32})
    assert cfg.int8 and cfg.calib_size == 32 and cfg.max_drift == 1.0      # the flag wins over the file
    assert cfg.calib_data == str(f.parent.resolve() / "data")                # relative to the file
    assert cfg.min_agreement == ConvertConfig().min_agreement                # the default
    assert cfg.uint8_tiles == 200 and cfg.checked().uint8_tiles == 200        # a size or "auto"
    assert config_from({}) == ConvertConfig()
    assert ConvertConfig().int8_quantize_stem is False                       # the stem in float by default
    assert config_from(vars(build_parser().parse_args(["m.keras", "--int8-quantize-stem"]))).int8_quantize_stem


@pytest.mark.parametrize("text, match", [("calib_sise = 3\n", "c.toml: unknown setting(s) calib_sise"),
                                         ("calib_size = \"many\"\n", "c.toml: calib_size must be an integer"),
                                         ("fp16 = 1\n", "c.toml: fp16 must be true or false"),
                                         ("uint8_tiles = \"big\"\n", "--uint8-tiles takes a tile size")])
def test_config_file_errors_exit_2(tiny_model, tmp_path, capsys, text, match):
    f = tmp_path / "c.toml"
    f.write_text(text)
    assert main([str(tiny_model), "-o", str(tmp_path / "o"), "--config", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err   # a file key stays as written in the file


def test_gate_failed_exit_code_is_mapped_by_the_command(monkeypatch, tiny_model, tmp_path, capsys):
    import convert.api

    class Gate:
        passed = False

        def summary(self):
            return "val drift +9.00 pp"

    def fake(model, cfg):
        return ConvertResult(out=tmp_path / "o", gates={"int8": Gate()})

    monkeypatch.setattr(convert.api, "convert_model", fake)
    assert main([str(tiny_model), "-o", str(tmp_path / "o")]) == GateFailed.exit_code == 1
    assert "INT8 drift gate failed: val drift +9.00 pp" in capsys.readouterr().err
    assert issubclass(InputError, EdgeError)
