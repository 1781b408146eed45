"""scripts/cpu_int8_trial.py: CPU int8 variants measured on the validation split only."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow  # a tiny model trained and converted to INT8 (about 7 s on 2 shared cores)

pytest.importorskip("onnxruntime")

from scripts import cpu_int8_trial  # noqa: E402


@pytest.fixture(scope="module")
def converted(tiny_model, sample_dir, tmp_path_factory):
    from convert.cli import main as convert

    out = tmp_path_factory.mktemp("trial") / "conv"
    rc = convert([str(tiny_model), "--int8", "--calib-data", str(sample_dir), "--calib-size", "24",
                  "--calib-method", "minmax", "--max-drift", "100", "--min-agreement", "0", "-o", str(out)])
    assert rc == 0
    return out


def test_measures_each_variant_on_val_only(tiny_model, sample_dir, converted, tmp_path, monkeypatch):
    import edge.data

    asked = []
    real = edge.data.select

    def spy(data, which="test", *a, **kw):
        asked.append(which)
        return real(data, which, *a, **kw)

    monkeypatch.setattr(edge.data, "select", spy)
    out = tmp_path / "trial.json"
    rc = cpu_int8_trial.main(["--data", str(sample_dir), "--case", f"tiny={tiny_model.parent}:{converted}",
                              "--variants", "qdq-u8s8-pc,qdq-u8u8-pc", "-o", str(out)])
    assert rc == 0 and asked == ["val"]
    r = json.loads(out.read_text())
    case = r["cases"]["tiny"]
    n_val = sum(1 for line in (tiny_model.parent / "split.csv").read_text().splitlines()[1:] if ",val," in line)
    assert case["val_images"] == n_val > 0 and case["views"] == 4 and case["method"] == "minmax"
    for v in ("qdq-u8s8-pc", "qdq-u8u8-pc"):
        assert 0 <= case[v]["accuracy_pct"] <= 100 and 0 <= case[v]["agreement_pct"] <= 100
        assert 0 < case[v]["mean_max_abs_prob_diff"] < 1    # int8 differs from FP32, but not wildly
    s = r["summary"]
    assert s["mean_of_mean_max_abs"]["qdq-u8u8-pc"] == pytest.approx(case["qdq-u8u8-pc"]["mean_max_abs_prob_diff"])
    assert s["never_less_accurate_than_qdq-u8s8-pc"]["qdq-u8u8-pc"] == (
        case["qdq-u8u8-pc"]["accuracy_pct"] >= case["qdq-u8s8-pc"]["accuracy_pct"])


@pytest.mark.parametrize("argv,match", [
    (["--case", "no-equals-sign"], "NAME=MODEL_DIR:CONVERT_DIR"),
    (["--case", "a=x:y", "--variants", "qdq-u4"], "unknown CPU int8 variant"),
    (["--case", "a=/nonexistent:/nowhere"], "does not exist"),
])
def test_bad_input_is_one_line(argv, match, sample_dir, tmp_path, capsys):
    assert cpu_int8_trial.main(["--data", str(sample_dir), *argv, "-o", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and not (tmp_path / "o.json").exists()
