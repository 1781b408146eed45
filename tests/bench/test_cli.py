"""edge-bench end to end on a small linear classifier: reports, gate, errors, missing TensorRT."""

import json
import shutil

import numpy as np
import pytest

from bench.cli import main


@pytest.fixture(scope="module")
def run_all(linear_models, sample_dir, tmp_path_factory):
    """One run over the exact and the rolled artifact with every report (shared by several tests)."""
    d = linear_models
    out = tmp_path_factory.mktemp("bench")
    rc = main([str(d / "model.onnx"), str(d / "model.rolled.onnx"), "--reference", str(d / "model.keras"),
               "--data", str(sample_dir), "--split", "all", "--batch", "1,4", "--iterations", "7", "--warmup", "1",
               "--threads", "1", "--corruptions", "--json", str(out / "b.json"), "--md", str(out / "b.md"),
               "--plots", str(out / "plots"), "-q"])
    return rc, out, json.loads((out / "b.json").read_text())


def test_exact_and_rolled_artifacts(run_all):
    rc, out, rep = run_all
    assert rc == 0                                      # no gate asked for
    exact, rolled = rep["results"]
    assert rep["reference"]["accuracy"] > 0.3          # the nearest-mean model is better than chance (1/6)
    assert exact["status"] == "ok" and exact["accuracy"] == rep["reference"]["accuracy"]
    assert exact["drift"]["top1_agreement"] == 1.0 and exact["disagreements"] == []
    assert exact["drift"]["max_abs_prob_diff"] < 1e-3
    assert rolled["status"] == "drift" and rolled["drift"]["top1_agreement"] == 0.0
    assert len(rolled["disagreements"]) == rep["reference"]["images"] == 60
    assert rolled["drift"]["accuracy_delta_pp"] < -20
    for r in (exact, rolled):
        assert set(r["latency_ms"]) == {"1", "4"} and r["iterations"] == {"1": 7, "4": 7}
        b4, per = r["latency_ms"]["4"], r["latency_per_image_ms"]["4"]
        assert per["p50"] == pytest.approx(b4["p50"] / 4)
        assert b4["min"] <= b4["p50"] <= b4["p99"] <= b4["max"]
        assert {"preprocess", "compute"} <= set(r["latency_parts_ms"]["1"])
        assert "h2d" not in r["latency_parts_ms"]["1"]    # ORT on the CPU cannot time copies
        assert r["throughput_ips"]["4"] > 0
        assert len(r["sha256"]) == 64                  # which file exactly was measured
        assert r["format"].startswith("ONNX") and r["backend"] == "onnxruntime"
    assert rolled["format"] == "ONNX"                   # a file name the formats table does not know
    assert rep["settings"]["batches"] == [1, 4] and rep["settings"]["threads"] == 1
    assert rep["environment"]["cores"] >= 1


def test_corruption_table(run_all):
    _, _, rep = run_all
    conds = rep["corruptions"]["conditions"]
    assert len(conds) == 1 + 9 * 5 and conds[0]["corruption"] == "none"
    exact = rep["results"][0]["artifact"]
    for c in conds:
        assert c["results"][exact]["top1_agreement"] == 1.0     # the same linear map under every corruption
    assert conds[0]["reference_accuracy"] == rep["reference"]["accuracy"]
    summ = rep["corruptions"]["summary"]
    ref = rep["reference"]["model"]
    assert set(summ) == {ref, exact, rep["results"][1]["artifact"]}
    accs = [c["reference_accuracies"][ref] for c in conds[1:]]
    assert summ[ref]["mca"] == pytest.approx(np.mean(accs))
    assert summ[ref]["relative"] == pytest.approx(summ[ref]["mca"] / summ[ref]["clean"])
    assert summ[exact]["max_drop_pp_vs_reference_1_3"] == pytest.approx(0.0, abs=1e-9)
    assert summ[exact]["min_agreement_1_3"] == 1.0 and summ[rep["results"][1]["artifact"]]["min_agreement_1_3"] == 0.0


def test_markdown_and_plots_written(run_all):
    _, out, rep = run_all
    md = (out / "b.md").read_text()
    assert "| Format | Precision | Size (MB) |" in md and "❎" in md and "✅" in md
    assert "](plots/latency_cdf.png)" in md
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["confusion_matrices.png", "corruptions.png",
                                                                    "latency_cdf.png", "throughput.png"]
    assert "mCA 1-3" in md and "](plots/corruptions.png)" in md


def test_fail_on_drift_exits_1_and_keeps_reports(linear_models, sample_dir, tmp_path, capsys):
    d = linear_models
    common = ["--reference", str(d / "model.keras"), "--data", str(sample_dir), "--batch", "1",
              "--iterations", "3", "--warmup", "0", "-q", "--fail-on-drift", "1"]
    rc = main([str(d / "model.onnx"), str(d / "model.rolled.onnx"), *common, "--json", str(tmp_path / "g.json")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "drift gate failed" in err and "model.rolled.onnx" in err and "model.onnx:" not in err
    assert json.loads((tmp_path / "g.json").read_text())["results"][1]["status"] == "drift"
    assert main([str(d / "model.onnx"), *common]) == 0


def test_split_file_beside_reference_is_the_default(linear_models, sample_dir, tmp_path):
    d = linear_models
    rc = main([str(d / "model.onnx"), "--reference", str(d / "model.keras"), "--data", str(sample_dir),
               "--duration", "0.05", "--warmup", "0", "-q", "--json", str(tmp_path / "t.json")])
    rep = json.loads((tmp_path / "t.json").read_text())
    assert rc == 0
    assert rep["settings"]["split_file"].endswith("split.csv")
    test_files = [row.split(",")[0] for row in (d / "split.csv").read_text().splitlines()[1:] if ",test," in row]
    assert rep["reference"]["images"] == len(test_files) < 60     # only the test split of split.csv
    assert rep["results"][0]["iterations"]["1"] >= 10       # --duration runs at least 10 timed calls


def test_engine_without_tensorrt_is_marked_failed(linear_models, sample_dir, tmp_path):
    pytest.importorskip("edge.runtime.tensorrt")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the engine would really be loaded")
    except ImportError:
        pass
    d = linear_models
    engine = tmp_path / "model.fp32.test.engine"
    engine.write_bytes(b"not an engine")
    meta = json.loads((d / "model.onnx.json").read_text())
    meta.update(artifact=engine.name, format="engine", backend="tensorrt",
                tensorrt={"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"})
    (tmp_path / (engine.name + ".json")).write_text(json.dumps(meta))
    rc = main([str(engine), str(d / "model.onnx"), "--reference", str(d / "model.keras"), "--data", str(sample_dir),
               "--iterations", "2", "--warmup", "0", "-q", "--json", str(tmp_path / "e.json"),
               "--md", str(tmp_path / "e.md")])
    rep = json.loads((tmp_path / "e.json").read_text())
    eng, onnx_ = rep["results"]
    assert rc == 0
    assert eng["status"] == "failed" and eng["status_reason"]
    assert eng["backend"] == "tensorrt" and eng["latency_ms"] == {}
    assert onnx_["status"] == "ok" and onnx_["latency_ms"]
    assert "❌" in (tmp_path / "e.md").read_text()


@pytest.mark.parametrize("case", ["missing-artifact", "missing-reference", "bad-batch", "classes", "no-meta", "iterations"])
def test_bad_input_exit_2_with_one_line(linear_models, sample_dir, tmp_path, capsys, case):
    d = linear_models
    art, ref, extra = str(d / "model.onnx"), str(d / "model.keras"), []
    if case == "missing-artifact":
        art = str(tmp_path / "nope.onnx")
    elif case == "missing-reference":
        ref = str(tmp_path / "nope.keras")
    elif case == "bad-batch":
        extra = ["--batch", "1,x"]
    elif case == "iterations":
        extra = ["--iterations", "0"]
    elif case == "classes":
        shutil.copy(d / "model.onnx", tmp_path / "m.onnx")
        meta = json.loads((d / "model.onnx.json").read_text())
        meta["classes"] = list(reversed(meta["classes"]))
        (tmp_path / "m.onnx.json").write_text(json.dumps(meta))
        art = str(tmp_path / "m.onnx")
    elif case == "no-meta":
        shutil.copy(d / "model.onnx", tmp_path / "bare.onnx")
        art = str(tmp_path / "bare.onnx")
    out = tmp_path / "x.json"
    rc = main([art, "--reference", ref, "--data", str(sample_dir), "-q", "--json", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("edge-bench: error:") and len(err.splitlines()) == 1
    assert not out.exists()


def test_each_artifact_is_compared_with_its_own_reference(linear_models, sample_dir, tmp_path):
    d = linear_models
    rc = main([str(d / "model.onnx"), str(d / "model.rolled.onnx"), "--reference", str(d / "model.keras"),
               "--reference", str(d / "rolled" / "model.keras"), "--data", str(sample_dir), "--iterations", "2",
               "--warmup", "0", "-q", "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md"),
               "--fail-on-drift", "0"])
    rep = json.loads((tmp_path / "r.json").read_text())
    exact, rolled = rep["results"]
    assert rc == 0                                       # each is exact against its own source model
    assert exact["reference"] == str(d / "model.keras")
    assert rolled["reference"] == str(d / "rolled" / "model.keras")
    assert exact["drift"]["top1_agreement"] == rolled["drift"]["top1_agreement"] == 1.0
    names = [r["name"] for r in rep["references"]]
    assert names[1] == "rolled/model.keras" and names[0] == f"{d.name}/model.keras"   # same file names: folder shown
    md = (tmp_path / "r.md").read_text()
    assert md.count("Keras reference `") == 2


def test_a_reference_with_another_split_is_refused(linear_models, sample_dir, tmp_path, capsys):
    d = linear_models
    other = tmp_path / "other"
    shutil.copytree(d / "rolled", other)
    import csv

    with open(other / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    t = next(r for r in rows if r["split"] == "test")
    u = next(r for r in rows if r["split"] == "train")
    t["split"], u["split"] = "train", "test"              # one test file swapped with a train file
    with open(other / "split.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rc = main([str(d / "model.onnx"), "--reference", str(d / "model.keras"), "--reference", str(other / "model.keras"),
               "--data", str(sample_dir), "--iterations", "1", "-q"])
    assert rc == 2
    assert "may have trained on the evaluated images" in capsys.readouterr().err


def test_part_of_the_reference_test_split_is_accepted(linear_models, sample_dir, tmp_path):
    """A sample that holds only some of a model's test files (data/neu-sample) may be benched."""
    import csv

    d = linear_models
    with open(d / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    test = [r for r in rows if r["split"] == "test"]
    data = tmp_path / "part"
    data.mkdir()
    for r in test[:-1]:
        shutil.copy(sample_dir / r["file"], data / r["file"])
    with open(data / "split.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(test[:-1])
    rc = main([str(d / "model.onnx"), "--reference", str(d / "model.keras"), "--data", str(data),
               "--split-file", str(data / "split.csv"), "--iterations", "1", "--warmup", "0", "-q",
               "--json", str(tmp_path / "p.json")])
    assert rc == 0
    assert json.loads((tmp_path / "p.json").read_text())["reference"]["images"] == len(test) - 1


def test_html_report_and_line_capacity(linear_models, sample_dir, tmp_path, capsys):
    from html.parser import HTMLParser

    d = linear_models
    rc = main([str(d / "model.onnx"), "--reference", str(d / "model.keras"), "--data", str(sample_dir),
               "--split", "all", "--batch", "1,4", "--iterations", "3", "--warmup", "0", "--threads", "1",
               "--json", str(tmp_path / "b.json"), "--md", str(tmp_path / "b.md"), "--html", str(tmp_path / "b.html"),
               "--line-speed", "2", "--strip-width", "1500", "--mm-per-px", "0.5", "--tile", "200"])
    assert rc == 0
    rep = json.loads((tmp_path / "b.json").read_text())
    cap = rep["line_capacity"]
    tp = rep["results"][0]["throughput_ips"]
    assert cap["required_tiles_per_s"] == 300                # 15 tiles across x 20 rows/s
    assert cap["measured_tiles_per_s"] == pytest.approx(max(tp.values()), rel=1e-3)
    assert cap["batch"] == int(max(tp, key=tp.get)) and cap["artifact"] == str(d / "model.onnx")
    assert cap["headroom"] == pytest.approx(cap["measured_tiles_per_s"] / 300, rel=1e-2)
    assert cap["verdict"] == ("keeps up" if cap["headroom"] >= 1 else "falls behind")
    assert rep["results"][0]["line_capacity"] == cap            # one artifact: its own verdict is the verdict
    from bench.capacity import sentence

    line = sentence(cap)
    assert line in (tmp_path / "b.md").read_text() and line in capsys.readouterr().out

    class P(HTMLParser):
        imgs, tables = [], 0

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])
            self.tables += tag == "table"

    p = P()
    page = (tmp_path / "b.html").read_text()
    p.feed(page)
    assert p.tables >= 3                                      # summary, latency, drift
    assert len(p.imgs) == 3 and all(s.startswith("data:image/png;base64,") for s in p.imgs)  # plots drawn for it
    assert "Line capacity" in page and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("extra, match", [
    (["--line-speed", "2"], "needs all of --line-speed, --strip-width and --mm-per-px"),
    (["--line-speed", "2", "--strip-width", "1500", "--mm-per-px", "0.5", "--stride", "400"], "gaps"),
    (["--line-speed", "-1", "--strip-width", "1500", "--mm-per-px", "0.5"], "--line-speed must be a positive")])
def test_bad_line_figures_exit_2_before_measuring(linear_models, sample_dir, tmp_path, capsys, extra, match):
    d = linear_models
    rc = main([str(d / "model.onnx"), "--reference", str(d / "model.keras"), "--data", str(sample_dir), "-q",
               "--json", str(tmp_path / "x.json"), "--html", str(tmp_path / "x.html"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "x.html").exists()
