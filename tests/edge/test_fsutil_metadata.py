"""edge.fsutil (atomic writes, staged output folders), edge.metadata and edge.errors.cli_entry."""

import json
import os

import pytest

from edge.errors import EdgeError, GateFailed, cli_entry
from edge.fsutil import atomic_path, sha256_file, staged_dir, write_json
from edge.metadata import classes_of, meta_path, preprocess_of, read_meta, write_meta
from edge.preprocess import Preprocess


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_json_roundtrip_numpy(tmp_path):
    import numpy as np

    p = write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3)})
    assert json.loads(p.read_text()) == {"x": 1.5, "y": [0, 1, 2]}


def test_staged_dir_refuses_existing_and_cleans_up(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EdgeError, match="already exists"):
        with staged_dir(out):
            pass
    # a failure inside leaves the old folder untouched and no staging folder behind
    (out / "old.txt").write_text("old")
    with pytest.raises(ValueError):
        with staged_dir(out, force=True) as st:
            (st / "new.txt").write_text("new")
            raise ValueError("fail")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "old.txt").exists()
    with staged_dir(out, force=True) as st:
        (st / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_staged_dir_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeError, match="not writable"):
        with staged_dir(tmp_path / "file" / "out"):
            pass


def test_staged_dir_unwritable_parent(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(EdgeError, match="not writable"):
            with staged_dir(ro / "out"):
                pass
    finally:
        ro.chmod(0o700)


def test_meta_roundtrip_and_fallback(tmp_path):
    art = tmp_path / "model.onnx"
    art.write_bytes(b"x")
    assert meta_path(art).name == "model.onnx.json"
    prep = Preprocess(64, 64, 1, "unit")
    write_meta(art, {"format": "onnx", "classes": ["a", "b"], "preprocess": prep.to_dict()})
    m = read_meta(art)
    assert m["artifact"] == "model.onnx" and classes_of(m) == ["a", "b"] and preprocess_of(m) == prep
    # a .keras file without its own JSON falls back to preprocess.json + classes.json
    k = tmp_path / "model.keras"
    k.write_bytes(b"k")
    with pytest.raises(EdgeError, match="no metadata"):
        read_meta(k)
    prep.save(tmp_path / "preprocess.json")
    write_json(tmp_path / "classes.json", ["a", "b"])
    assert read_meta(k)["format"] == "keras" and read_meta(k)["classes"] == ["a", "b"]
    with pytest.raises(EdgeError, match="does not exist"):
        read_meta(tmp_path / "missing.onnx")


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_cli_entry_one_line_and_exit_codes(capsys):
    @cli_entry("edge-x")
    def main(argv):
        if argv == ["bad"]:
            raise EdgeError("first line\nsecond line")
        if argv == ["gate"]:
            raise GateFailed("drift 3 pp")
        return 0

    assert main(["ok"]) == 0
    assert main(["bad"]) == 2
    err = capsys.readouterr().err
    assert err == "edge-x: error: first line second line\n"
    assert main(["gate"]) == 1
