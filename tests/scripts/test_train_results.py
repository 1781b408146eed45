"""scripts/train_results.py: the results table of edge-train runs (groups, pooling, kept rows, bad input)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow  # the `trained` fixture is an edge-train run (about 15 s on 2 shared cores)

pytest.importorskip("keras")

from scripts import train_results as results  # noqa: E402


def test_results_table(trained, tmp_path, capsys):
    rc = results.main([str(trained), str(trained), "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    rep = json.loads((trained / "report.json").read_text())
    assert res["runs"][0]["accuracy"] == rep["accuracy"]
    assert res["runs"][0]["params"] == rep["training"]["params"]["total"]
    g = res["groups"][0]
    assert g["runs"] == 2 and g["accuracy"]["mean"] == pytest.approx(rep["accuracy"]) and g["accuracy"]["std"] == 0
    pool = rep["training"]["pool"]
    assert res["runs"][0]["pool"] == pool and g["pool"] == pool
    assert ("| compact |" if pool == "avg" else f"| compact ({pool}) |") in (tmp_path / "r.md").read_text()
    capsys.readouterr()
    rc = results.main([str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "report.json" in err and len(err.splitlines()) == 1


def test_results_groups_by_pooling(trained):
    r = results.row_of(trained)
    # rows of results files older than --pool have no "pool": they are plain-GAP compact runs
    rows = [{**r, "pool": "avg", "seed": 1, "accuracy": 0.9}, {**r, "pool": None, "seed": 2, "accuracy": 0.8},
            {**r, "pool": "avgmax", "seed": 3, "accuracy": 1.0}]
    rows[1].pop("pool")
    gs = results.group(rows)
    assert sorted((g["pool"], g["runs"]) for g in gs) == [("avg", 2), ("avgmax", 1)]
    assert [g["accuracy"]["mean"] for g in gs if g["pool"] == "avg"] == [pytest.approx(0.85)]
    md = results.markdown(rows, gs)
    assert "| compact (avgmax) | none |" in md and md.count("| compact | none |") == 2


def test_results_keep_carries_old_rows(trained, tmp_path, capsys):
    old = {"runs": [{**results.row_of(trained), "run": "runs/gone", "seed": 7, "accuracy": 0.5},
                    {**results.row_of(trained), "run": str(trained), "accuracy": 0.1}], "groups": []}
    (tmp_path / "old.json").write_text(json.dumps(old))
    rc = results.main([str(trained), "--keep", str(tmp_path / "old.json"), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    # the given run replaces the kept row of the same path; the row of the vanished run is copied as it was
    assert [r["run"] for r in runs] == [str(trained), "runs/gone"]
    assert runs[0]["accuracy"] == json.loads((trained / "report.json").read_text())["accuracy"]
    assert runs[1]["accuracy"] == 0.5 and runs[1]["seed"] == 7
    capsys.readouterr()
    (tmp_path / "bad.json").write_text("[1, 2]")
    rc = results.main([str(trained), "--keep", str(tmp_path / "bad.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not a train_results JSON" in err and len(err.splitlines()) == 1
