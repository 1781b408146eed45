"""edge-convert --triton-repo: every config.pbtxt parsed into Triton's own ModelConfig protobuf
(tritonclient.grpc.model_config_pb2) and compared with the artifact's metadata.

Engines here are stand-ins (bytes + engine metadata: no TensorRT on this machine): they test only how
the repository is laid out and configured, not that Triton loads them.
"""

import json
from pathlib import Path

import pytest

from edge.errors import EdgeError
from edge.metadata import read_meta, write_meta

pytest.importorskip("tritonclient.grpc.model_config_pb2")
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from convert.triton import META_KEY, parse_pbtxt, write_repository  # noqa: E402

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture
def artifacts(tmp_path):
    """An edge-convert-like folder: FP32 ONNX, a uint8-tile ONNX (preprocessing folded), two INT8 engines
    (stand-ins for sm72 and sm87), a CPU int8 ONNX and an INT8 ONNX whose drift gate failed."""
    from convert.fold import fold_preprocess
    from scripts.fixtures.intensity_model import make_intensity_model

    src = tmp_path / "models" / "neu-compact" / "model.keras"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"k")
    out = tmp_path / "convert"
    f32 = make_intensity_model(out / "model.onnx", 32)
    meta = read_meta(f32)
    meta.update(precision="fp32", source_model={"path": str(src), "sha256": "ab" * 32})
    write_meta(f32, meta)
    fold_preprocess(f32, out / "model.fp16.onnx", (48, 48), meta=dict(meta, precision="fp16"))
    for name, prec, gate in (("model.int8cpu.onnx", "int8-cpu", True), ("model.int8.onnx", "int8", False)):
        (out / name).write_bytes(f32.read_bytes())
        write_meta(out / name, dict(meta, precision=prec, drift_gate={"passed": gate}))
    for cc in ("7.2", "8.7"):
        e = out / f"model.int8.b1-16.trt10.3.orin-sm{cc.replace('.', '')}.engine"
        e.write_bytes(f"plan for {cc}".encode())
        write_meta(e, dict(meta, format="engine", backend="tensorrt", precision="int8",
                           tensorrt={"version": "10.3", "compute_capability": cc, "profile": [1, 16, 16],
                                     "dla_core": None}))
    (out / "model.int8.engine").symlink_to(e.name)                  # edge-convert's link to the latest build
    (out / "model.int8.engine.json").symlink_to(e.name + ".json")
    return out


def load(repo, name):
    d = Path(repo) / name
    return parse_pbtxt((d / "config.pbtxt").read_text()), d


def test_repository_configs_parse_and_match_the_metadata(tmp_path, artifacts, caplog):
    from convert.triton import repository_for

    repo = tmp_path / "repo"
    with caplog.at_level("INFO", logger="convert.triton"):
        written = repository_for(artifacts, repo)
    msgs = [r.getMessage() for r in caplog.records]
    assert sorted(p.name for p in written) == ["neu-compact", "neu-compact-fp16", "neu-compact-int8-cpu",
                                               "neu-compact-trt-int8"]
    assert any("model.int8.onnx" in m and "drift gate failed" in m for m in msgs)   # never served

    for name, artifact in (("neu-compact", "model.onnx"), ("neu-compact-fp16", "model.fp16.onnx"),
                           ("neu-compact-int8-cpu", "model.int8cpu.onnx")):
        cfg, d = load(repo, name)
        meta = read_meta(artifacts / artifact)
        assert cfg.name == name and cfg.platform == "onnxruntime_onnx"
        assert cfg.max_batch_size == 32                                   # dynamic batch in the metadata
        (i,), (o,) = cfg.input, cfg.output
        assert i.name == meta["input"]["name"] and list(i.dims) == meta["input"]["shape"][1:]
        assert o.name == meta["output"]["name"] and list(o.dims) == meta["output"]["shape"][1:] == [6]
        want_in = mc.TYPE_UINT8 if meta["input"]["dtype"] == "uint8" else mc.TYPE_FP32
        assert i.data_type == want_in and o.data_type == mc.TYPE_FP32 and i.format == mc.ModelInput.FORMAT_NHWC
        assert o.label_filename == "labels.txt" and (d / "labels.txt").read_text().split() == meta["classes"]
        assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
        kind = mc.ModelInstanceGroup.KIND_CPU if meta["precision"] == "int8-cpu" else mc.ModelInstanceGroup.KIND_GPU
        assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, kind)]
        assert (d / "1" / "model.onnx").read_bytes() == (artifacts / artifact).read_bytes()
        carried = json.loads(cfg.parameters[META_KEY].string_value)
        assert carried["classes"] == CLASSES and carried["preprocess"] == meta["preprocess"]
        assert carried["input"] == meta["input"] and carried["source_sha256"] == "ab" * 32

    fp16, _ = load(repo, "neu-compact-fp16")                               # preprocessing folded: uint8 tiles in
    assert fp16.input[0].data_type == mc.TYPE_UINT8 and list(fp16.input[0].dims) == [48, 48, 1]

    trt, d = load(repo, "neu-compact-trt-int8")
    assert trt.platform == "tensorrt_plan" and trt.max_batch_size == 16    # the engines' profile
    assert dict(trt.cc_model_filenames) == {"7.2": "model.sm72.plan", "8.7": "model.sm87.plan"}
    assert (d / "1" / "model.sm87.plan").read_bytes() == b"plan for 8.7"
    assert list(trt.input[0].dims) == [32, 32, 1] and list(trt.dynamic_batching.preferred_batch_size) == [8, 16]


def test_one_engine_fixed_batch_and_errors(tmp_path, artifacts):
    e = next(artifacts.glob("*sm87.engine"))
    cfg, d = load(tmp_path / "r", write_repository([e], tmp_path / "r", name="line7")[0].name)
    assert cfg.name == "line7-trt-int8" and not cfg.cc_model_filenames and (d / "1" / "model.plan").is_file()

    f32 = artifacts / "model.onnx"
    meta = read_meta(f32)
    meta["input"]["shape"][0] = meta["output"]["shape"][0] = 1                # a batch-1 artifact: no batching
    write_meta(f32, meta)
    cfg, _ = load(tmp_path / "r", write_repository([f32], tmp_path / "r")[0].name)
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [1, 32, 32, 1]
    assert not cfg.HasField("dynamic_batching")

    with pytest.raises(EdgeError, match="no ONNX or engine"):
        write_repository([tmp_path / "nothing.txt"], tmp_path / "r2")
    same = artifacts / "copy.engine"
    same.write_bytes(b"x")
    write_meta(same, read_meta(e))
    with pytest.raises(EdgeError, match="two int8 engines for compute capability 8.7"):
        write_repository([e, same], tmp_path / "r3")
    assert not (tmp_path / "r3" / "neu-compact-trt-int8").exists()          # nothing half-written
    with pytest.raises(EdgeError, match="does not parse"):
        parse_pbtxt("name: 'x' platform: ")


def test_edge_convert_from_onnx_triton_repo_without_tensorrt(tmp_path, artifacts, capsys):
    from convert.cli import main
    from convert.tensorrt import tensorrt_installed

    if tensorrt_installed():
        pytest.skip("TensorRT is installed here: --from-onnx would build an engine")
    rc = main(["--from-onnx", str(artifacts / "model.onnx"), "--triton-repo", str(tmp_path / "repo")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "no engine built here" in out and "neu-compact" in out
    cfg, _ = load(tmp_path / "repo", "neu-compact")
    assert cfg.platform == "onnxruntime_onnx"
