"""TensorRT version forks (builder section of compat.py) and engine planning without TensorRT.

A stand-in module is used ONLY to check which branch our code takes per version; it says nothing
about TensorRT itself. test_tensorrt_wheels.py checks the names against the real wheels.
"""

from __future__ import annotations

import types

import pytest

from convert.tensorrt import engine_name, engine_plan
from edge.errors import EdgeError
from edge.runtime.tensorrt import compat


def fake_trt(version: str, **extra):
    """A stand-in with the enum members our branches touch, as distinct sentinels."""
    flags = types.SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
    ndcf = types.SimpleNamespace(EXPLICIT_BATCH=0)
    m = types.SimpleNamespace(__version__=version, BuilderFlag=flags, NetworkDefinitionCreationFlag=ndcf,
                              MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
                              DeviceType=types.SimpleNamespace(DLA="DLA", GPU="GPU"))
    for k, v in extra.items():
        setattr(m, k, v)
    return m


@pytest.mark.parametrize("version,explicit", [("8.5.2", True), ("8.6.1", True), ("10.3.0", False), ("11.0.0", False)])
def test_network_flags(version, explicit):
    assert compat.network_flags(fake_trt(version), "fp32") == (1 if explicit else 0)


@pytest.mark.parametrize("version,fp16,int8", [
    ("8.5.2", ["FP16"], ["INT8", "FP16"]),
    ("8.6.1", ["FP16"], ["INT8", "FP16"]),
    ("10.3.0", ["FP16"], ["INT8", "FP16"]),
    ("11.0.0", [], []),  # strongly typed: the ONNX types decide
])
def test_precision_flags(version, fp16, int8):
    trt = fake_trt(version)
    assert compat.precision_flags(trt, "fp32") == []
    assert compat.precision_flags(trt, "fp16") == fp16
    assert compat.precision_flags(trt, "int8") == int8
    with pytest.raises(EdgeError):
        compat.precision_flags(trt, "int4")


@pytest.mark.parametrize("version,fp16_src", [("8.5.2", "fp32"), ("10.3.0", "fp32"), ("11.1.0", "fp16")])
def test_onnx_source_per_precision(version, fp16_src):
    trt = fake_trt(version)
    assert compat.onnx_for_precision(trt, "fp16") == fp16_src
    assert compat.onnx_for_precision(trt, "int8") == "int8"  # the Q/DQ model everywhere


def test_progress_monitor_only_where_it_exists():
    class Config:
        progress_monitor = None

    assert compat.attach_progress(fake_trt("8.6.1"), Config()) is None

    class IProgressMonitor:
        def __init__(self):
            pass

    cfg = Config()
    mon = compat.attach_progress(fake_trt("10.3.0", IProgressMonitor=IProgressMonitor), cfg)
    assert cfg.progress_monitor is mon and mon.step_complete("x", 1) is True


def test_dla_with_gpu_fallback():
    class Cfg:
        def __init__(self):
            self.flags = []

        def set_flag(self, f):
            self.flags.append(f)

    trt = fake_trt("8.5.2")
    cfg = Cfg()
    compat.use_dla(trt, types.SimpleNamespace(num_DLA_cores=2), cfg, 1)
    assert cfg.default_device_type == "DLA" and cfg.DLA_core == 1 and cfg.flags == ["GPU_FALLBACK"]
    with pytest.raises(EdgeError, match="no DLA"):
        compat.use_dla(trt, types.SimpleNamespace(num_DLA_cores=0), Cfg(), 0)
    with pytest.raises(EdgeError, match="DLA cores 0..1"):
        compat.use_dla(trt, types.SimpleNamespace(num_DLA_cores=2), Cfg(), 2)


def test_api_lists_cover_each_branch():
    for b in ("8.5", "8.6", "10", "11"):
        assert "Builder.build_serialized_network" in compat.BUILDER_API[b]
    assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" in compat.BUILDER_API["8.5"]
    assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" not in compat.BUILDER_API["10"]
    assert "BuilderFlag.FP16" not in compat.BUILDER_API["11"] and "BuilderFlag.INT8" not in compat.BUILDER_API["11"]
    assert "IProgressMonitor" not in compat.BUILDER_API["8.6"]


def test_engine_plan_decisions():
    assert engine_plan("never").build is False
    p = engine_plan("auto", installed=False, gpu=False)
    assert not p.build and "edge-convert --from-onnx {out}/model.int8.onnx" in p.message
    p = engine_plan("auto", installed=True, gpu=False)
    assert not p.build and "no CUDA GPU" in p.message
    assert engine_plan("auto", installed=True, gpu=True).build
    assert engine_plan("always", installed=True, gpu=True).build
    with pytest.raises(EdgeError, match="TensorRT is not installed"):
        engine_plan("always", installed=False, gpu=False)
    with pytest.raises(EdgeError, match="no CUDA GPU"):
        engine_plan("always", installed=True, gpu=False)


def test_engine_name_says_version_and_gpu():
    n = engine_name("int8", None, 32, "10.3.0", "Orin", "8.7")
    assert n == "model.int8.b1-32.trt10.3.0.orin-sm87.engine"
    assert engine_name("fp16", 1, 32, "8.5.2", "NVIDIA GeForce RTX 3090", "8.6", dla=0) == \
        "model.fp16.b1.trt8.5.2.rtx-3090-sm86-dla0.engine"


def test_from_onnx_refuses_bad_input(tmp_path):
    from convert.cli import main

    assert main(["--from-onnx", str(tmp_path / "none.onnx")]) == 2
    (tmp_path / "m.txt").write_text("x")
    assert main(["--from-onnx", str(tmp_path / "m.txt")]) == 2
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert main(["--from-onnx", str(tmp_path / "m.onnx")]) == 2  # no metadata


def test_from_onnx_needs_the_qdq_model_and_tensorrt(tmp_path, capsys):
    import json

    from convert.cli import main
    from convert.tensorrt import tensorrt_installed

    art = tmp_path / "model.int8cpu.onnx"
    art.write_bytes(b"x")
    (tmp_path / "model.int8cpu.onnx.json").write_text(json.dumps({"format": "onnx", "precision": "int8-cpu"}))
    assert main(["--from-onnx", str(art)]) == 2
    assert "needs the Q/DQ model" in capsys.readouterr().err
    if tensorrt_installed():
        return
    art = tmp_path / "model.int8.onnx"
    art.write_bytes(b"x")
    (tmp_path / "model.int8.onnx.json").write_text(json.dumps({"format": "onnx", "precision": "int8"}))
    assert main(["--from-onnx", str(art)]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and len(err.strip().splitlines()) == 1


class _Layer:
    """Stand-in layer: a name, output tensor names, and what our code sets."""

    def __init__(self, name, outs, dtypes=None):
        self.name, self._outs, self.precision, self.out_types = name, outs, None, {}
        self.num_outputs = len(outs)
        self._dtypes = dtypes or ["FLOAT"] * len(outs)

    def get_output(self, j):
        return types.SimpleNamespace(name=self._outs[j], dtype=self._dtypes[j])

    def set_output_type(self, j, t):
        self.out_types[j] = t


class _Net:
    def __init__(self, layers):
        self.layers, self.num_layers = layers, len(layers)

    def get_layer(self, i):
        return self.layers[i]


class _Cfg:
    def __init__(self):
        self.flags = []

    def set_flag(self, f):
        self.flags.append(f)


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0"])
def test_fp16_keeps_the_fp32_nodes_on_weakly_typed_branches(version):
    trt = fake_trt(version, DataType=types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF"))
    trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS = "OBEY"
    layers = [_Layer("stem_conv", ["t0"]), _Layer("stem_conv_1", ["t0b"]), _Layer("other", ["t1"]),
              _Layer("renamed_by_parser", ["probs_logits"]), _Layer("stem_convx", ["t3"])]
    cfg = _Cfg()
    pinned = compat.keep_fp32_layers(trt, _Net(layers), cfg, nodes=["stem_conv"], tensors=["probs_logits"])
    assert pinned == ["stem_conv", "stem_conv_1", "renamed_by_parser"]
    assert all(layers[i].precision == "FLOAT" and layers[i].out_types == {0: "FLOAT"} for i in (0, 1, 3))
    assert layers[2].precision is None and layers[4].precision is None
    assert cfg.flags == ["OBEY"]
    with pytest.raises(EdgeError, match="none of the nodes"):
        compat.keep_fp32_layers(trt, _Net([_Layer("other", ["t1"])]), _Cfg(), nodes=["gone"])
    assert compat.keep_fp32_layers(trt, _Net(layers), _Cfg()) == []  # nothing kept: no constraint, no flag


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0"])
def test_fp16_keep_never_forces_float_on_int32_or_bool_outputs(version):
    trt = fake_trt(version, DataType=types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT32="INT32", BOOL="BOOL"))
    trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS = "OBEY"
    mixed = _Layer("stem_conv", ["t0", "idx"], ["HALF", "INT32"])   # e.g. TopK: values + indices
    shape = _Layer("stem_conv_1", ["s"], ["INT32"])                  # a Shape layer of the node
    cmp_ = _Layer("stem_conv_2", ["m"], ["BOOL"])
    pinned = compat.keep_fp32_layers(trt, _Net([mixed, shape, cmp_]), _Cfg(), nodes=["stem_conv"])
    assert pinned == ["stem_conv"]
    assert mixed.out_types == {0: "FLOAT"} and mixed.precision == "FLOAT"
    assert shape.out_types == {} and shape.precision is None and cmp_.out_types == {} and cmp_.precision is None


def test_fp16_keeps_nothing_on_11_strongly_typed():
    trt = fake_trt("11.4.0")  # no OBEY flag, no DataType: touching them would raise
    cfg = _Cfg()
    layers = [_Layer("stem_conv", ["t0"])]
    assert compat.keep_fp32_layers(trt, _Net(layers), cfg, nodes=["stem_conv"]) == []
    assert cfg.flags == [] and layers[0].precision is None


def test_fp16_kept_nodes_read_from_the_fp16_metadata(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from convert.tensorrt import fp16_kept_nodes
    from edge.metadata import write_meta

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="a"),
                           helper.make_node("Relu", ["h"], ["y"], name="b")], "g", [x], [y])
    onnx.save(helper.make_model(g), str(tmp_path / "model.onnx"))
    assert fp16_kept_nodes({"precision": "fp32"}, tmp_path / "model.onnx") == {"nodes": [], "tensors": []}
    (tmp_path / "model.fp16.onnx").write_bytes(b"")
    write_meta(tmp_path / "model.fp16.onnx", {"precision": "fp16", "fp16": {"kept_fp32": ["b"]}})
    assert fp16_kept_nodes({"precision": "fp32"}, tmp_path / "model.onnx") == {"nodes": ["b"], "tensors": ["y"]}


# ----------------------------------------------------------------------------- section 2: builder defects
@pytest.mark.parametrize("version,explicit", [("9.3.0", True), ("10.0.1", False)])
def test_tensorrt_9_takes_the_10_branch_but_keeps_explicit_batch(version, explicit):
    # the branch itself ("10" for both): tests/edge/runtime/test_branch_consistency.py
    assert compat.network_flags(fake_trt(version), "fp32") == (1 if explicit else 0)


def test_profile_opt_is_the_daemon_batch_and_dla_is_static():
    from convert.tensorrt import profile_batches

    assert profile_batches(None, 32) == (1, 16, 32)          # opt = edge-capture's batch, not max
    assert profile_batches(None, 8) == (1, 8, 8)             # clamped into the range
    assert profile_batches(1, 32) == (1, 1, 1)
    assert profile_batches(None, 32, dla=0) == (16, 16, 16)  # the DLA has no dynamic shapes
    with pytest.raises(EdgeError):
        profile_batches(None, 0)


@pytest.mark.parametrize("version,precision,quantized,refused", [
    ("10.3.0", "fp32", False, "FP16 or INT8 only"),
    ("8.5.2", "int8", True, "does not run an explicitly quantized"),
    ("8.6.2", "fp16", False, None),
    ("10.3.0", "int8", True, None),
    ("11.1.0", "fp16", False, "no DLA support"),
])
def test_dla_refusals(version, precision, quantized, refused):
    trt = fake_trt(version)
    if refused is None:
        compat.check_dla(trt, precision, quantized)
    else:
        with pytest.raises(EdgeError, match=refused) as ei:
            compat.check_dla(trt, precision, quantized)
        assert "\n" not in str(ei.value)


def test_dla_placement_records_layers_per_device():
    class Cfg:
        def can_run_on_DLA(self, layer):
            return layer.name != "softmax"

    net = _Net([_Layer("conv", ["a"]), _Layer("softmax", ["p"])])
    assert compat.dla_placement(fake_trt("10.3.0"), net, Cfg()) == {"dla": ["conv"], "gpu": ["softmax"]}


class _CacheCfg:
    """create_timing_cache / set_timing_cache like TensorRT: a blob of another version is refused."""

    def __init__(self, mode):
        self.mode, self.attached = mode, None

    def create_timing_cache(self, data):
        if data and self.mode == "raise":
            raise RuntimeError("Timing cache header mismatch")
        if data and self.mode == "none":
            return None
        return ("cache", bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache[1] and self.mode == "refuse":
            return False
        self.attached = cache
        return True


@pytest.mark.parametrize("mode", ["raise", "none", "refuse"])
def test_stale_timing_cache_warns_and_starts_fresh(mode, caplog):
    cfg = _CacheCfg(mode)
    with caplog.at_level("WARNING", logger="edge.runtime.tensorrt.compat"):
        cache = compat.set_timing_cache(fake_trt("10.3.0"), cfg, b"old-cache")
    assert cache == ("cache", b"") and cfg.attached == ("cache", b"")
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "stale" in said[0] and "starting a fresh one" in said[0]


def test_fitting_timing_cache_is_used_silently(caplog):
    cfg = _CacheCfg("ok")
    with caplog.at_level("DEBUG"):
        assert compat.set_timing_cache(fake_trt("10.3.0"), cfg, b"blob") == ("cache", b"blob")
    assert caplog.records == []


def test_engine_alias_links_the_versioned_file(tmp_path):
    from convert.tensorrt import link_alias

    for build in ("model.int8.b1-32.trt8.5.2.2.orin-sm87.engine", "model.int8.b1-32.trt8.5.2.2.orin-sm87-x.engine"):
        eng = tmp_path / build
        eng.write_bytes(b"plan " + build.encode())
        (tmp_path / (build + ".json")).write_text("{}")
        alias = link_alias(eng, "int8")
        assert alias.name == "model.int8.engine" and alias.read_bytes() == eng.read_bytes()
        assert (tmp_path / "model.int8.engine.json").resolve() == (tmp_path / (build + ".json")).resolve()


def test_capture_toml_and_readme_name_the_alias_the_converter_writes():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    toml = (root / "jetson" / "capture.toml").read_text()
    assert 'model.int8.engine"' in toml
    readme = (root / "jetson" / "README.md").read_text()
    assert "model.int8.engine" in readme and "edge-convert --from-onnx" in readme
    assert "--int8 --engine always" not in readme   # no TensorFlow on the device


def test_missing_engine_points_to_from_onnx(tmp_path):
    from edge.runtime import load_runner

    (tmp_path / "model.int8.b1-32.trt10.3.0.30.orin-sm87.engine").write_bytes(b"x")
    with pytest.raises(EdgeError) as ei:
        load_runner(tmp_path / "model.int8.engine")
    msg = str(ei.value)
    assert "edge-convert --from-onnx" in msg and "model.int8.onnx" in msg and "trt10.3.0.30" in msg
