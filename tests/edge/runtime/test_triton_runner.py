"""TritonRunner: request building and error paths only.

No Triton server exists on this machine. A stand-in client answers with the config that
``edge-convert --triton-repo`` wrote and runs the request's bytes through ONNX Runtime: this checks
what the runner sends (names, shapes, datatypes, bytes, chunking to max_batch_size) and how it reads
the answer, never that a Triton server accepts it. The error paths use the real tritonclient
against a closed port.
"""

import numpy as np
import pytest

from edge.errors import EdgeError

pytest.importorskip("tritonclient.grpc")
from edge.runtime.triton import TritonRunner, parse_triton_url  # noqa: E402

NP = {"FP32": np.float32, "UINT8": np.uint8}


class StandIn:
    """Enough of tritonclient.grpc.InferenceServerClient for the runner, backed by ONNX Runtime."""

    def __init__(self, config_dict, onnx_path, ready=True):
        import onnxruntime as ort

        self.config, self.ready, self.calls = config_dict, ready, []
        self.sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def get_model_config(self, model, version="", as_json=False, client_timeout=None):
        assert as_json
        return {"config": self.config}

    def is_model_ready(self, model, version=""):
        return self.ready

    def infer(self, model, inputs, model_version="", outputs=None, client_timeout=None):
        (inp,), names = inputs, [o.name() for o in outputs]
        arr = np.frombuffer(inp._raw_content, NP[inp.datatype()]).reshape(inp.shape())  # the bytes sent
        self.calls.append((model, inp.name(), inp.datatype(), tuple(inp.shape()), *names))
        res = dict(zip(names, self.sess.run(names, {inp.name(): arr})))

        class Result:
            def as_numpy(self, name):
                return res.get(name)

        return Result()


@pytest.fixture
def served(tmp_path):
    """An intensity model written into a Triton repository by convert.triton, and its config as a dict."""
    from google.protobuf import json_format

    from convert.triton import parse_pbtxt, write_repository
    from scripts.fixtures.intensity_model import make_intensity_model
    from edge.metadata import read_meta, write_meta

    m = make_intensity_model(tmp_path / "neu-compact" / "model.onnx", 32)
    write_meta(m, dict(read_meta(m), precision="fp32"))
    (d,) = write_repository([m], tmp_path / "repo", name="neu-compact", max_batch=4)
    cfg = json_format.MessageToDict(parse_pbtxt((d / "config.pbtxt").read_text()), preserving_proto_field_name=True)
    return cfg, m


def test_parse_url():
    assert parse_triton_url("triton://gpu1:8001/neu-compact") == ("grpc", "gpu1:8001", "neu-compact", "")
    assert parse_triton_url("triton://gpu1/neu-compact/3") == ("grpc", "gpu1:8001", "neu-compact", "3")
    assert parse_triton_url("triton+http://gpu1/m") == ("http", "gpu1:8000", "m", "")
    for bad in ("http://gpu1/m", "triton://gpu1", "triton://gpu1/m/latest", "triton://gpu1/a/1/x"):
        with pytest.raises(EdgeError):
            parse_triton_url(bad)


def test_requests_match_the_onnx_runner_and_chunk_to_max_batch(served):
    from edge.runtime import load_runner

    cfg, onnx_path = served
    client = StandIn(cfg, onnx_path)
    images = np.random.default_rng(0).integers(0, 256, (10, 40, 40), dtype=np.uint8)
    with TritonRunner("triton://gpu1:8001/neu-compact", client=client, warmup=0) as r:
        assert r.classes == load_runner(onnx_path).classes and r.max_batch == 4
        got = r.infer_images(images)
    with load_runner(onnx_path) as ref:
        want = ref.infer_images(images)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert [c[3][0] for c in client.calls] == [4, 4, 2]                        # max_batch_size 4
    assert {c[:3] for c in client.calls} == {("neu-compact", "input", "FP32")}
    assert {c[3][1:] for c in client.calls} == {(32, 32, 1)} and {c[4] for c in client.calls} == {"probs"}


def test_error_paths(served):
    cfg, onnx_path = served
    with pytest.raises(EdgeError, match="not ready"):
        with TritonRunner("triton://gpu1/neu-compact", client=StandIn(cfg, onnx_path, ready=False), warmup=0):
            pass
    bare = dict(cfg, parameters={})
    with pytest.raises(EdgeError, match="steel_edge.metadata"):
        TritonRunner("triton://gpu1/neu-compact", client=StandIn(bare, onnx_path))
    with TritonRunner("triton://gpu1/neu-compact", client=StandIn(cfg, onnx_path), warmup=0) as r:
        with pytest.raises(EdgeError, match="shape"):
            r.infer(np.zeros((2, 16, 16, 1), np.float32))
    # the real gRPC client against a port where nothing listens: one line, no traceback
    from scripts.fixtures.mosquitto import free_port

    with pytest.raises(EdgeError, match=r"Triton 127\.0\.0\.1:\d+ model m: get_model_config failed"):
        TritonRunner(f"triton://127.0.0.1:{free_port()}/m", timeout=2)


def test_edge_capture_with_a_triton_model_url_fails_in_one_line(tmp_path, capsys):
    from edge.capture.cli import main
    from scripts.fixtures.mosquitto import free_port

    rc = main(["--model", f"triton://127.0.0.1:{free_port()}/neu-compact", "--source", str(tmp_path),
               "--events", str(tmp_path / "ev.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "get_model_config failed" in err and "Traceback" not in err


def test_daemon_runs_on_a_triton_runner(tmp_path, served):
    """The daemon takes a TritonRunner like any runner (stand-in client): events for every tile."""
    import cv2

    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon
    from edge.capture.events import read_events
    from scripts.fixtures.intensity_model import class_level

    cfg_dict, onnx_path = served
    frames = tmp_path / "frames"
    frames.mkdir()
    for f in range(3):
        img = np.concatenate([np.full((32, 32), class_level((f + k) % 6), np.uint8) for k in range(4)], axis=1)
        cv2.imwrite(str(frames / f"f{f}.png"), img)
    runner = TritonRunner("triton://gpu1/neu-compact", client=StandIn(cfg_dict, onnx_path), warmup=0)
    cfg = CaptureConfig(model="triton://gpu1/neu-compact", source=str(frames), events=str(tmp_path / "ev.jsonl"),
                        log_all=True)
    CaptureDaemon(cfg, runner=runner).run()
    ev = read_events(tmp_path / "ev.jsonl")
    assert len(ev) == 12
    assert [e["label"] for e in ev[:4]] == ["crazing", "inclusion", "patches", "pitted_surface"]


def test_url_reaches_the_runner_through_load_runner_and_edge_bench_helpers(served, monkeypatch):
    """``triton://`` through load_runner / artifact_meta / edge-bench's open_runner and describe
    (tritonclient's client class replaced by the stand-in)."""
    import tritonclient.grpc

    from bench.formats import describe
    from bench.runners import open_runner
    from edge.runtime import artifact_meta, backend_of, load_runner
    from edge.runtime.triton import TritonURL

    cfg, onnx_path = served
    monkeypatch.setattr(tritonclient.grpc, "InferenceServerClient", lambda url: StandIn(cfg, onnx_path))
    url = TritonURL("triton://gpu1:8001/neu-compact")
    assert backend_of(url) == "triton" and url.name == "neu-compact" and not url.is_file()
    meta = artifact_meta(url)
    assert meta["backend"] == "triton" and len(meta["classes"]) == 6
    assert describe(url, meta)["backend"] == "triton"
    with open_runner(url, meta) as r, load_runner(str(url)) as r2:
        assert isinstance(r, TritonRunner) and isinstance(r2, TritonRunner)
        x = np.zeros((3, 32, 32, 1), np.float32)
        np.testing.assert_array_equal(r.infer(x), r2.infer(x))


def test_config_file_keeps_a_triton_model_url(tmp_path):
    from edge.capture.config import load_config_file

    cfg = tmp_path / "capture.toml"
    cfg.write_text('model = "triton://gpu1:8001/neu-compact"\nsource = "csi://0"\nevents = "ev.jsonl"\n')
    v = load_config_file(cfg)
    assert v["model"] == "triton://gpu1:8001/neu-compact" and v["events"] == str(tmp_path / "ev.jsonl")


def _with_score(path, threshold):
    """The intensity model plus an ``ood_score`` output = -max(probs), and an ood block in its metadata."""
    import onnx
    from onnx import TensorProto, helper

    from edge.metadata import read_meta, write_meta

    m = onnx.load(str(path))
    m.graph.node.extend([helper.make_node("ReduceMax", ["probs"], ["top"], axes=[1], keepdims=1),
                         helper.make_node("Neg", ["top"], ["ood_score"])])
    m.graph.output.append(helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N", 1]))
    onnx.save(m, str(path))
    write_meta(path, {**read_meta(path), "ood": {"score": "max_softmax", "output": "ood_score",
                                                 "threshold": threshold, "acceptance": 0.99}})
    return path


def test_score_output_is_requested_and_returned(tmp_path):
    """A model with an open-set threshold: convert.triton lists ood_score, the runner asks for it and keeps it
    in last_score, as the ONNX Runtime runner does on the same model."""
    from google.protobuf import json_format

    from convert.triton import parse_pbtxt, write_repository
    from scripts.fixtures.intensity_model import make_intensity_model
    from edge.metadata import read_meta, write_meta
    from edge.runtime import load_runner

    m = _with_score(make_intensity_model(tmp_path / "neu-compact" / "model.onnx", 32), threshold=-0.8)
    write_meta(m, dict(read_meta(m), precision="fp32"))
    (d,) = write_repository([m], tmp_path / "repo", name="neu-compact", max_batch=4)
    pb = parse_pbtxt((d / "config.pbtxt").read_text())
    assert [(o.name, list(o.dims)) for o in pb.output] == [("probs", [6]), ("ood_score", [1])]
    cfg = json_format.MessageToDict(pb, preserving_proto_field_name=True)
    client = StandIn(cfg, m)
    images = np.random.default_rng(1).integers(0, 256, (6, 40, 40), dtype=np.uint8)
    with TritonRunner("triton://gpu1/neu-compact", client=client, warmup=0) as r:
        assert r.meta["ood"]["threshold"] == -0.8
        got, score = r.infer_images(images), r.last_score
    with load_runner(m) as ref:
        want, want_score = ref.infer_images(images), ref.last_score
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(score, want_score, atol=1e-6)
    assert {c[4:] for c in client.calls} == {("probs", "ood_score")}
    # a server that does not answer with the score: one line
    bad = StandIn(cfg, m)
    bad.sess.run = lambda names, feed, _run=bad.sess.run: [_run(names[:1], feed)[0], None][:len(names)]
    with TritonRunner("triton://gpu1/neu-compact", client=bad, warmup=0) as r:
        with pytest.raises(EdgeError, match="no 'ood_score' output"):
            r.infer_images(images[:2])
