"""The Runner interface on the ONNX Runtime runner, with an ONNX model built in the test."""

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.metadata import write_meta
from edge.preprocess import Preprocess
from edge.runtime import backend_of, load_runner


def _softmax_model(path, h=8, w=8, k=3, batch="N"):
    """GlobalAveragePool over NHWC → MatMul → Softmax, with known weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    wts = np.arange(k, dtype=np.float32).reshape(1, k) + 1.0  # (C=1, K)
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("GlobalAveragePool", ["nchw"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, h, w, 1])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, k])],
                          [numpy_helper.from_array(wts, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(m, path)
    return wts


@pytest.fixture
def artifact(tmp_path):
    p = tmp_path / "m.onnx"
    wts = _softmax_model(str(p))
    write_meta(p, {"format": "onnx", "backend": "onnxruntime", "precision": "fp32", "classes": ["a", "b", "c"],
                   "preprocess": Preprocess(8, 8, 1, "unit").to_dict()})
    return p, wts


def _expected(batch, wts):
    m = batch.mean(axis=(1, 2, 3))[:, None] * wts
    e = np.exp(m - m.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ort_runner_matches_numpy(artifact):
    p, wts = artifact
    assert backend_of(p) == "onnxruntime"
    rng = np.random.default_rng(0)
    x = rng.random((5, 8, 8, 1), dtype=np.float32)
    with load_runner(p, threads=1) as r:
        assert r.input_spec.name == "input" and r.input_spec.dynamic_batch
        assert r.output_spec.shape == (-1, 3)
        assert r.classes == ["a", "b", "c"]
        out = r.infer(x)
        assert r.last_timing.compute_ms > 0 and r.last_timing.h2d_ms is None
    np.testing.assert_allclose(out, _expected(x, wts), rtol=1e-5, atol=1e-6)


def test_infer_images_uses_stored_preprocessing(artifact):
    p, wts = artifact
    imgs = np.full((2, 16, 16), 255, np.uint8)  # resized to 8x8 and scaled to 1.0
    with load_runner(p) as r:
        out = r.infer_images(imgs)
        assert r.last_timing.preprocess_ms > 0
    np.testing.assert_allclose(out, _expected(np.ones((2, 8, 8, 1), np.float32), wts), rtol=1e-5)


def test_fixed_batch_model_runs_in_chunks(tmp_path):
    p = tmp_path / "b1.onnx"
    wts = _softmax_model(str(p), batch=1)
    write_meta(p, {"classes": ["a", "b", "c"], "preprocess": Preprocess(8, 8).to_dict()})
    x = np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32)
    with load_runner(p) as r:
        assert r.max_batch == 1
        out = r.infer(x)
    np.testing.assert_allclose(out, _expected(x, wts), rtol=1e-5, atol=1e-6)


def test_runner_errors(artifact, tmp_path):
    p, _ = artifact
    r = load_runner(p)
    with pytest.raises(EdgeError, match="not active"):
        r.infer(np.zeros((1, 8, 8, 1), np.float32))
    with r:
        with pytest.raises(EdgeError, match="shape"):
            r.infer(np.zeros((1, 9, 8, 1), np.float32))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    write_meta(bad, {"classes": ["a"], "preprocess": Preprocess(8, 8).to_dict()})
    with pytest.raises(EdgeError, match="cannot load"):
        with load_runner(bad):
            pass
    with pytest.raises(EdgeError, match="no CUDAExecutionProvider|CUDAExecutionProvider"):
        with load_runner(p, providers=["CUDAExecutionProvider"]):
            pass


def test_graph_optimization_level_from_metadata(tmp_path):
    import onnxruntime as ort

    p = tmp_path / "lv.onnx"
    _softmax_model(str(p))
    write_meta(p, {"classes": ["a", "b", "c"], "preprocess": Preprocess(8, 8).to_dict(),
                   "onnxruntime": {"graph_optimization_level": "basic"}})
    r = load_runner(p)
    assert r.graph_optimization_level == "basic"
    assert load_runner(p, graph_optimization_level="all").graph_optimization_level == "all"
    seen = {}
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        seen["level"] = sess_options.graph_optimization_level
        return real(path, sess_options=sess_options, providers=providers)

    ort.InferenceSession = spy
    try:
        with r:
            pass
    finally:
        ort.InferenceSession = real
    assert seen["level"] == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with pytest.raises(EdgeError, match="graph_optimization_level"):
        load_runner(p, graph_optimization_level="fastest")


def test_split_batch_runs_parts_at_once_and_keeps_the_order(artifact):
    """split=3: a batch of 7 runs as 3 parts in the one-thread session, outputs in input order; a batch
    smaller than the split runs whole in the other session."""
    import onnxruntime as ort

    p, wts = artifact
    x = np.random.default_rng(2).random((7, 8, 8, 1), dtype=np.float32)
    with load_runner(p) as whole:
        ref = whole.infer(x)
    calls = []
    real_run = ort.InferenceSession.run

    def spy(self, names, feed, *a, **k):
        calls.append((id(self), len(next(iter(feed.values())))))
        return real_run(self, names, feed, *a, **k)

    with load_runner(p, split=3) as r:
        assert r.parts == 3
        ort.InferenceSession.run = spy
        try:
            out = r.infer(x)
            small = r.infer(x[:2])
        finally:
            ort.InferenceSession.run = real_run
    split_calls, small_calls = calls[:3], calls[3:]
    assert sorted(n for _, n in split_calls) == [2, 2, 3] and len({s for s, _ in split_calls}) == 1
    assert small_calls == [(small_calls[0][0], 2)] and small_calls[0][0] != split_calls[0][0]
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(out, _expected(x, wts), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(small, ref[:2])
    assert r.parts == 1  # inactive again

    def boom(self, names, feed, *a, **k):
        if len(next(iter(feed.values()))) == 2:   # the parts run by the pool's threads
            raise RuntimeError("part failed")
        return real_run(self, names, feed, *a, **k)

    with load_runner(p, split=3) as r:
        ort.InferenceSession.run = boom
        try:
            with pytest.raises(RuntimeError, match="part failed"):
                r.infer(x)
        finally:
            ort.InferenceSession.run = real_run
        np.testing.assert_array_equal(r.infer(x), ref)   # the runner goes on after a failed batch


def test_split_default_follows_the_cores_and_threads(artifact, monkeypatch):
    import edge.runtime.onnxrt.runner as mod

    p, _ = artifact
    monkeypatch.setattr(mod, "_usable_cores", lambda: 4)
    with load_runner(p) as r:
        assert r.parts == 4          # CPU, onnxruntime's default threads: one part per core
    with load_runner(p, threads=2) as r:
        assert r.parts == 1          # intra-op threads asked for: not split
    with load_runner(p, split=0) as r:
        assert r.parts == 1
    monkeypatch.setattr(mod, "_usable_cores", lambda: 1)
    with load_runner(p) as r:
        assert r.parts == 1
    with pytest.raises(EdgeError, match="split"):
        load_runner(p, split=-1)


def test_lanes_run_whole_batches_at_once_in_order(artifact):
    """split=3 gives 3 lanes: infer_batches keeps up to 3 batches in flight, each whole in the one-thread
    session, and yields them in input order with the same probabilities as infer; infer_lane leaves the
    runner's last_score / last_timing alone; a batch that fails surfaces and the runner goes on."""
    import threading

    import onnxruntime as ort

    p, wts = artifact
    rng = np.random.default_rng(3)
    batches = [rng.random((n, 8, 8, 1), dtype=np.float32) for n in (5, 1, 4, 7, 2, 3)]
    with load_runner(p) as whole:
        refs = [whole.infer(b) for b in batches]
    real_run = ort.InferenceSession.run
    seen, lock, running = [], threading.Lock(), {"now": 0, "most": 0}

    def slow_spy(self, names, feed, *a, **k):
        n = len(next(iter(feed.values())))
        with lock:
            seen.append((id(self), n))
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        try:
            if n == 5:   # the first batch is the slowest: the later ones finish first, the order must hold
                threading.Event().wait(0.2)
            return real_run(self, names, feed, *a, **k)
        finally:
            with lock:
                running["now"] -= 1

    with load_runner(p, split=3) as r:
        assert r.lanes == 3
        before = r.last_timing
        ort.InferenceSession.run = slow_spy
        try:
            outs = list(r.infer_batches(batches))
            probs, score = r.infer_lane(batches[3])
        finally:
            ort.InferenceSession.run = real_run
        assert r.last_timing is before and score is None
        assert sorted(n for _, n in seen[:6]) == [1, 2, 3, 4, 5, 7]          # every batch whole, none split
        assert len({s for s, _ in seen}) == 1 and running["most"] >= 2      # one session, batches at once
        for got, ref in zip(outs, refs):
            np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(probs, refs[3])
        np.testing.assert_allclose(outs[0], _expected(batches[0], wts), rtol=1e-5, atol=1e-6)

        def boom(self, names, feed, *a, **k):
            if len(next(iter(feed.values()))) == 4:
                raise RuntimeError("lane failed")
            return real_run(self, names, feed, *a, **k)

        ort.InferenceSession.run = boom
        try:
            with pytest.raises(RuntimeError, match="lane failed"):
                list(r.infer_batches(batches))
        finally:
            ort.InferenceSession.run = real_run
        np.testing.assert_array_equal(next(r.infer_batches(batches[:1])), refs[0])   # goes on
    assert r.lanes == 1   # inactive again
    with load_runner(p, threads=1) as r:
        assert r.lanes == 1 and [o.shape for o in r.infer_batches(batches[:2])] == [(5, 3), (1, 3)]


def test_a_lane_goes_on_past_a_slow_batch(artifact):
    """Two lanes, the first batch slow: the other lane classifies the next three batches meanwhile (the
    stream hands up to twice the lanes ahead), and the results still come in input order."""
    import threading

    import onnxruntime as ort

    p, _ = artifact
    rng = np.random.default_rng(4)
    batches = [rng.random((n, 8, 8, 1), dtype=np.float32) for n in (5, 1, 2, 3, 4)]
    with load_runner(p) as whole:
        refs = [whole.infer(b) for b in batches]
    real_run = ort.InferenceSession.run
    done, lock = [], threading.Lock()

    def spy(self, names, feed, *a, **k):
        n = len(next(iter(feed.values())))
        if n == 5:
            threading.Event().wait(0.3)
        out = real_run(self, names, feed, *a, **k)
        with lock:
            done.append(n)
        return out

    with load_runner(p, split=2) as r:
        ort.InferenceSession.run = spy
        try:
            outs = list(r.infer_batches(batches))
        finally:
            ort.InferenceSession.run = real_run
    assert done.index(5) >= 3                      # batches 1, 2 and 3 were done before the slow one
    for got, ref in zip(outs, refs):
        np.testing.assert_array_equal(got, ref)


def test_spin_after_run_off_stops_the_intra_op_threads_when_a_run_returns(artifact, tmp_path):
    """spin_after_run=False reaches onnxruntime as session.force_spinning_stop on the session with
    intra-op threads (not on the one-thread lane session, which has none); the default leaves
    onnxruntime's own behaviour; the capture daemon's runner has it off."""
    p, _ = artifact

    def entry(sess):
        try:
            return sess.get_session_options().get_session_config_entry("session.force_spinning_stop")
        except Exception:  # onnxruntime raises when the key was never set
            return None

    with load_runner(p, spin_after_run=False) as r:
        assert entry(r.session) == "1" and entry(r._split_session) is None
        np.testing.assert_array_equal(r.infer(np.zeros((1, 8, 8, 1), np.float32)).shape, (1, 3))
    with load_runner(p) as r:
        assert r.spin_after_run and entry(r.session) is None
    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon

    cfg = CaptureConfig(model=str(p), source=str(tmp_path), events=str(tmp_path / "ev.jsonl"))
    assert CaptureDaemon(cfg)._make_runner().spin_after_run is False
