"""The train stage's Python API: configs validated in one place (parameter names), --config layering,
evaluate_model end to end on the tiny model (train_model end to end: tests/train/test_finetune.py's base)."""

from __future__ import annotations

import json
import sys

import pytest

from edge.errors import EdgeError
from train import EvalConfig, TrainConfig


@pytest.mark.parametrize("kw, needle", [
    (dict(model="compact"), "give data"),
    (dict(data="d", out="o"), "give either model ARCH (train) or init MODEL.keras"),
    (dict(data="d", out="o", model="compact", epochs=0), "epochs must be >= 1, got 0"),
    (dict(data="d", out="o", model="compact", batch_size=0), "batch_size must be >= 1, got 0"),
    (dict(data="d", out="o", model="compact", lr=0.0), "lr must be > 0"),
    (dict(data="d", out="o", model="vgg"), "model must be one of"),
    (dict(data="d", out="o", model="compact", holdout=0.2), "holdout and freeze apply to init only"),
    (dict(data="d", out="o", model="mobilenetv2", pool="avgmax"), "pool avgmax applies to compact only"),
    (dict(data="d", out="o", init="m.keras", holdout=1.5), "holdout must be in (0, 1), got 1.5"),
    (dict(data="d", out="o", init="m.keras", distribute="mirrored"), "distribute applies to edge-train's recipes"),
    (dict(data="d", out="o", init="missing.keras"), "init model missing.keras does not exist"),
    (dict(data="d", out="o", model="compact", label_smoothing=1.0), "label_smoothing must be in [0, 1), got 1.0"),
    (dict(data="d", out="o", model="compact", label_smoothing=-0.1), "label_smoothing must be in [0, 1), got -0.1"),
    (dict(data="d", out="o", init="m.keras", label_smoothing=0.0), "label_smoothing does not apply to init"),
])
def test_train_config_errors_name_the_parameters(kw, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeError) as ei:
        TrainConfig(**kw).validate()
    assert needle in str(ei.value) and "--" not in str(ei.value)


def test_train_config_errors_name_the_flags_for_the_command(tmp_path, capsys):
    from edge.errors import cli_entry

    @cli_entry("edge-train")
    def main(argv):
        TrainConfig(data="d", out=str(tmp_path / "o"), model="compact", **argv).validate()

    assert main({"batch_size": 0}) == 2
    assert capsys.readouterr().err == "edge-train: error: --batch-size must be >= 1, got 0\n"
    (tmp_path / "o").mkdir()
    assert main({}) == 2
    assert "already exists (use --force to replace it)" in capsys.readouterr().err
    with pytest.raises(EdgeError, match=r"already exists \(use force=True to replace it\)"):
        main.__wrapped__({})   # from Python: the parameter


def test_train_model_refuses_bad_config_before_writing(tmp_path, sample_dir):
    from train import train_model

    with pytest.raises(EdgeError, match="fine_tune_epochs must be >= 1"):
        train_model(TrainConfig(data=str(sample_dir), out=str(tmp_path / "o"), model="compact", fine_tune_epochs=0))
    assert not (tmp_path / "o").exists()


def test_edge_train_config_file_then_flags(tmp_path, sample_dir):
    from train import cli

    cfg_file = tmp_path / "conf" / "train.toml"
    cfg_file.parent.mkdir()
    cfg_file.write_text('[train]\ndata = "../data"\nmodel = "compact"\nepochs = 7\nseed = 3\nout = "runs/x"\n')
    cfg = cli.config_from_args(cli.build_parser().parse_args(["--config", str(cfg_file), "--seed", "5"]))
    assert (cfg.model, cfg.epochs, cfg.seed, cfg.batch_size) == ("compact", 7, 5, 32)  # file, flag over file, default
    assert cfg.data == str(tmp_path / "conf" / "../data") and cfg.out == str(tmp_path / "conf" / "runs/x")


def test_edge_train_config_file_errors(tmp_path, capsys):
    from train import cli

    bad = tmp_path / "bad.toml"
    bad.write_text("epoch = 3\n")
    assert cli.main(["--config", str(bad)]) == 2
    assert "unknown setting(s) epoch" in capsys.readouterr().err
    bad.write_text('epochs = "ten"\n')
    assert cli.main(["--config", str(bad)]) == 2
    assert "bad.toml: epochs must be an integer, got 'ten'" in capsys.readouterr().err
    assert cli.main(["--model", "compact", "--out", str(tmp_path / "o")]) == 2
    assert "give --data" in capsys.readouterr().err


def test_import_train_does_not_import_tensorflow():
    import subprocess

    code = "import sys, train; train.TrainConfig; train.EvalConfig; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_eval_config_errors_name_the_parameters(tmp_path):
    with pytest.raises(EdgeError, match="^batch must be >= 1, got 0$"):
        EvalConfig(model="m.keras", data="d", batch=0).validate()
    with pytest.raises(EdgeError, match="split must be one of"):
        EvalConfig(model="m.keras", data="d", split="dev").validate()
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(EdgeError, match="plots .* is not a folder"):
        EvalConfig(model="m.keras", data="d", plots=str(f)).validate()


def test_evaluate_model_on_the_tiny_model(tiny_model, sample_dir, tmp_path):
    pytest.importorskip("keras")
    from train import evaluate_model

    res = evaluate_model(EvalConfig(model=str(tiny_model), data=str(sample_dir), split="val",
                                    json=str(tmp_path / "e.json")))
    assert res.report["split_file"] == str(tiny_model.parent / "split.csv")  # the one beside the model
    assert res.report["n"] == sum(1 for ln in (tiny_model.parent / "split.csv").read_text().splitlines()
                                  if ",val," in ln)
    assert json.loads((tmp_path / "e.json").read_text())["accuracy"] == res.accuracy
    assert res.summary.startswith("val accuracy ")


def test_edge_eval_config_file_then_flags(tmp_path):
    from train import evaluate

    conf = tmp_path / "eval.yaml"
    conf.write_text("eval:\n  model: m/model.keras\n  data: d\n  split: val\n  batch: 8\n")
    pytest.importorskip("yaml")
    cfg = evaluate.config_from_args(evaluate.build_parser().parse_args(["--config", str(conf), "--batch", "4"]))
    assert (cfg.model, cfg.split, cfg.batch) == (str(tmp_path / "m" / "model.keras"), "val", 4)
