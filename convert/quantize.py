"""FP16 and INT8 graph rewrites of the FP32 ONNX model, from stored calibration ranges.

* :func:`to_fp16`: onnxconverter-common float16 conversion, FP32 inputs/outputs kept.
* :func:`to_qdq_int8`: explicit Q/DQ for TensorRT: symmetric int8 activations and weights (zero
  point 0), per-channel weights on Conv/Gemm/MatMul (output-channel axis), bias not quantized
  (TensorRT fuses the float bias), Q/DQ pairs on the float weights (TensorRT 8.5 expects
  ``Q(weight) -> DQ``; later versions accept both).
* :func:`to_cpu_int8`: the onnxruntime-on-x86 variant (uint8 activations, int8 weights).

Both INT8 rewrites go through onnxruntime's ``quantize_static`` range-only path
(``calibration_cache_path``): the ranges come from the calibration record, so the drift gate can
re-quantize with nodes excluded without recalibrating.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from edge.errors import EdgeError

log = logging.getLogger(__name__)

#: Ops that get Q/DQ in the TensorRT model: the weighted layers (TensorRT propagates Q/DQ through
#: pooling/activations itself; Q/DQ on a bias Add would quantize the bias).
TRT_OP_TYPES = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
#: TensorRT quantizes MatMul weights (K, N) along N, the output channels.
PER_CHANNEL_AXIS = {"MatMul": 1}
TRT_EXTRA_OPTIONS = {
    "ActivationSymmetric": True,      # zero point 0 on activations: TensorRT supports only symmetric
    "WeightSymmetric": True,          # zero point 0 on weights
    "QuantizeBias": False,            # keep float bias: TensorRT fuses it into the conv/gemm
    "AddQDQPairToWeight": True,       # float weight -> Q -> DQ: the form TensorRT 8.5-11 all import
    "DedicatedQDQPair": False,
    "QDQOpTypePerChannelSupportToAxis": PER_CHANNEL_AXIS,
    # Q/DQ on the inputs (activation + weight) of weighted layers only, as NVIDIA's QAT tools place
    # them: TensorRT fuses the output side itself. Quantizing outputs would also put Q/DQ on the
    # logits in front of the softmax, and leaving a node in float (drift gate) would not remove
    # the Q/DQ its producer puts on its input.
    "OpTypesToExcludeOutputQuantization": TRT_OP_TYPES,
}


#: Calibration method of a plain classifier's INT8 models: entropy (KL) ranges, measured in
#: docs/results/recipe-trials.md and convert.md.
DEFAULT_CALIB_METHOD = "entropy"
#: Calibration method of a model with an in-graph open-set score (``ood`` block): the entropy calibrator
#: clips each activation where the KL divergence of the bulk is smallest (the compact model's ReLU outputs
#: at a fifth of their maximum), which leaves the argmax alone but moves the logits of exactly the tiles in
#: the tails, where the ``unknown`` threshold sits; the score gate then fails. Ranges that keep the tails
#: pass it; chosen on val by the rule in docs/results/open-set.md ("INT8 with the score").
OPEN_SET_CALIB_METHOD = "minmax"


def default_calib_method(meta: Optional[Dict]) -> str:
    """The INT8 calibration method for a model with this metadata when none is asked for.

    :data:`OPEN_SET_CALIB_METHOD` for a model with an open-set score (``ood`` block), else
    :data:`DEFAULT_CALIB_METHOD`.
    """
    return OPEN_SET_CALIB_METHOD if (meta or {}).get("ood") else DEFAULT_CALIB_METHOD


def to_fp16(src: str | os.PathLike, dst: str | os.PathLike, keep_fp32: Iterable[str] = ()) -> Path:
    """FP16 weights and compute, float32 input and output (``keep_io_types``).

    Softmax stays in float32 (op_block_list) so probabilities keep their precision; nodes named in
    ``keep_fp32`` too (see :func:`fp16_with_tolerance`).
    """
    import onnx
    from onnxconverter_common import float16

    from edge.fsutil import atomic_path

    model = onnx.load(str(src))
    m16 = float16.convert_float_to_float16(model, keep_io_types=True,
                                           op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + ["Softmax"],
                                           node_block_list=list(keep_fp32) or None)
    with atomic_path(dst) as tmp:
        onnx.save(m16, str(tmp))
    return Path(dst)


def fp16_with_tolerance(src: str | os.PathLike, dst: str | os.PathLike, x, tolerance: float = 5e-3,
                        max_kept: int = 3, candidates: int = 4) -> Dict:
    """FP16 model whose probabilities stay within ``tolerance`` of FP32 on ``x``.

    If the full FP16 model differs by more, the weighted node (Conv/Gemm/MatMul) whose staying in
    FP32 lowers the max abs probability difference most is kept in FP32 (greedy, up to ``max_kept``
    nodes). Candidates per round: the nodes fed by the graph input (the first convolution, the
    typical culprit), then the nodes whose weights lose most signal when rounded to FP16 (lowest
    SQNR); the first ``candidates`` of them are each measured on ``x``.

    Returns:
        ``{"max_abs_diff_before", "max_abs_diff", "kept_fp32", "tolerance", "passed"}``.
    """
    import numpy as np

    from convert.export import ort_predict
    from edge.runtime.onnxrt.session import session as ort_session

    ref = ort_predict(ort_session(src), x)

    def diff(keep):
        to_fp16(src, dst, keep)
        return float(np.max(np.abs(ort_predict(ort_session(dst), x) - ref)))

    keep: List[str] = []
    d0 = d = diff(keep)
    if d > tolerance:
        # The weighted nodes fed by the graph input first (the stem: it matters more than its FP16 weight
        # damage says; docs/results/code-choices.md), then by FP16 weight damage.
        first = stem_nodes(src)
        nodes = first + [n for n in _fp16_weight_damage(src) if n not in first]
    while d > tolerance and len(keep) < max_kept:
        # measure only the `candidates` nodes whose weights FP16 damages most (cheap to rank)
        trials = {n: diff(keep + [n]) for n in [n for n in nodes if n not in keep][:candidates]}
        if not trials:
            break
        best = min(trials, key=trials.get)
        if trials[best] >= d * 0.9:  # no candidate helps: the error is spread, not one node's
            log.info(f"fp16: no single node explains the difference {d:.2e}; keeping the model all-FP16")
            break
        keep.append(best)
        d = trials[best]
        log.info(f"fp16: keeping {best} in FP32: max abs prob diff {d:.2e}")
    if keep:
        d = diff(keep)  # leave the chosen model on disk
    return {"max_abs_diff_before": d0, "max_abs_diff": d, "kept_fp32": keep, "tolerance": tolerance,
            "passed": d <= tolerance}


def stem_nodes(src) -> List[str]:
    """The stem: weighted nodes (Conv/Gemm/MatMul) whose data input is computed from the graph input without
    another weighted node in between (through casts, transposes, reshapes...).

    Both INT8 forms leave these in float by default (:func:`to_qdq_int8` ``float_stem``, the CPU variant
    ``qdq-u8s8-pc-fs``), and the FP16 tolerance search tries them first.
    """
    import onnx

    g = onnx.load(str(src), load_external_data=False).graph
    reach = {i.name for i in g.input}
    out = []
    for n in g.node:  # ONNX nodes are topologically sorted
        if not n.input or n.input[0] not in reach:
            continue
        if n.op_type in TRT_OP_TYPES:
            out.append(n.name)
        else:
            reach.update(n.output)
    return out


def _fp16_weight_damage(src) -> List[str]:
    """Weighted nodes ordered by the SQNR of their weights rounded to FP16 (worst first)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(src), load_external_data=False).graph
    inits = {i.name: i for i in g.initializer}
    scored = []
    for n in g.node:
        if n.op_type in TRT_OP_TYPES and len(n.input) > 1 and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            err = np.linalg.norm(w - w.astype(np.float16).astype(np.float64))
            scored.append((20 * np.log10(max(np.linalg.norm(w), 1e-30) / max(err, 1e-30)), n.name))
    return [name for _, name in sorted(scored)]


def _quantize(src, dst, method: str, ranges: Dict[str, Sequence[float]], *, fmt: str, act: str, weight: str,
              per_channel: bool, op_types: Optional[List[str]], exclude: Iterable[str], extra: Dict,
              reduce_range: bool = False) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    from calibrate.ranges import _ort_method, tensors_data
    from edge.fsutil import atomic_path

    qt = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with tempfile.TemporaryDirectory(prefix="edge-quant-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(tensors_data(method, ranges), cache)
        with atomic_path(dst) as out:
            try:
                quantize_static(
                    str(src), str(out), calibration_data_reader=None,
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    op_types_to_quantize=op_types, per_channel=per_channel, reduce_range=reduce_range,
                    activation_type=qt[act], weight_type=qt[weight],
                    nodes_to_exclude=sorted(set(exclude) | set(score_nodes(src))),
                    calibrate_method=_ort_method(method), extra_options=dict(extra),
                    calibration_cache_path=str(cache))
            except EdgeError:
                raise
            except Exception as e:
                raise EdgeError(f"onnxruntime quantization failed: {' '.join(str(e).split())[:200]}") from None
    return Path(dst)


def to_qdq_int8(src: str | os.PathLike, dst: str | os.PathLike, method: str, ranges: Dict[str, Sequence[float]],
                exclude: Iterable[str] = (), float_stem: bool = True) -> Path:
    """The TensorRT Q/DQ model (see module docstring), nodes in ``exclude`` left in float.

    Args:
        src: FP32 ONNX model.
        dst: Output path (written atomically).
        method: Calibration method the ranges came from.
        ranges: ``{tensor: (low, high)}`` from the calibration record.
        exclude: Nodes left in float (the drift gate's choice).
        float_stem: Also leave the stem (:func:`stem_nodes`: the one-channel convolution reading the
            image) in float, as the CPU int8 default ``qdq-u8s8-pc-fs`` does. Symmetric int8 gives the
            [0, 1] input 128 levels for 256 gray levels; on the corrupted val split this is what cost
            the Q/DQ model 6 of 270 images under motion blur (docs/results/open-set.md, "Stem
            convolution in float"). Its input and weights then carry no Q/DQ: TensorRT 8.5-10.x (weakly
            typed; :func:`edge.runtime.tensorrt.compat.precision_flags` sets INT8 + FP16) run such a
            layer of an explicitly quantized network in FP16 or FP32, the builder's pick; TensorRT 11
            (strongly typed) keeps the ONNX type, FP32. ``False`` quantizes it like every other layer.
    """
    exclude = list(exclude) + (stem_nodes(src) if float_stem else [])
    return _quantize(src, dst, method, ranges, fmt="qdq", act="int8", weight="int8", per_channel=True,
                     op_types=TRT_OP_TYPES, exclude=exclude, extra=TRT_EXTRA_OPTIONS)


#: CPU int8 variants that can be measured (``--int8-cpu-format``); the default is chosen on the
#: validation split (docs/results/cpu-int8-trial.md).
CPU_VARIANTS = {
    # onnxruntime's recommendation for x86 without VNNI: uint8 activations, int8 weights, 7-bit
    # weights (reduce_range) to avoid saturation in the u8s8 AVX2 kernels, per-tensor weights.
    "qdq-u8s8": dict(fmt="qdq", act="uint8", weight="int8", per_channel=False, reduce_range=True),
    "qoperator-u8s8": dict(fmt="qoperator", act="uint8", weight="int8", per_channel=False, reduce_range=True),
    # per-channel weights: depthwise convolutions (MobileNetV2) and the compact model lose too much with
    # one scale per tensor (docs/results/code-choices.md)
    "qdq-u8s8-pc": dict(fmt="qdq", act="uint8", weight="int8", per_channel=True, reduce_range=True),
    # uint8 weights (symmetric: zero point 128), full 8 bits, per channel: MLAS's u8u8 kernels widen
    # to 16 bits before multiplying, so there is no vpmaddubsw saturation and no need for 7-bit
    # weights (8-bit *int8* weights without reduce_range saturate: docs/results/cpu-int8-trial.md).
    "qdq-u8u8-pc": dict(fmt="qdq", act="uint8", weight="uint8", per_channel=True, reduce_range=False),
    # qdq-u8s8-pc with the stem (the weighted layers fed by the graph input) left in float: a
    # one-channel convolution does too little work per output for onnxruntime's int8 kernels, which
    # then spend their time requantizing its many outputs (docs/results/code-choices.md,
    # cpu-int8-speed.md), and the input image keeps its 8 bits exactly.
    "qdq-u8s8-pc-fs": dict(fmt="qdq", act="uint8", weight="int8", per_channel=True, reduce_range=True,
                           float_stem=True),
}
#: qdq-u8s8-pc-fs is the default (issue 14): on val as accurate as qdq-u8s8-pc, closer to FP32 and less
#: CPU per tile (docs/results/cpu-int8-parity.md, cpu-int8-speed.md). qdq-u8u8-pc, closer to FP32 still,
#: was not faster than FP32, and a CPU int8 model is there to be fast (docs/results/cpu-int8-trial.md).
DEFAULT_CPU_VARIANT = "qdq-u8s8-pc-fs"


def to_cpu_int8(src: str | os.PathLike, dst: str | os.PathLike, method: str, ranges: Dict[str, Sequence[float]],
                exclude: Iterable[str] = (), variant: str = DEFAULT_CPU_VARIANT,
                input_range: Optional[Sequence[float]] = None) -> Path:
    """The onnxruntime CPU int8 model (uint8 activations; int8 or uint8 weights by ``variant``).

    Args:
        src: FP32 ONNX model.
        dst: Output path (written atomically).
        method: Calibration method the ranges came from.
        ranges: ``{tensor: (low, high)}`` from the calibration record (symmetric, made for TensorRT).
        exclude: Nodes left in float (the drift gate's choice for the Q/DQ model).
        variant: One of :data:`CPU_VARIANTS`.
        input_range: ``(low, high)`` the preprocessing can give the graph input
            (:attr:`edge.preprocess.Preprocess.value_range`); a non-negative input then gets the
            uint8 range [0, high] instead of the symmetric one.
    """
    if variant not in CPU_VARIANTS:
        raise EdgeError(f"unknown CPU int8 variant {variant!r} (one of {', '.join(CPU_VARIANTS)})")
    v = dict(CPU_VARIANTS[variant])
    # uint8 activations: onnxruntime drops Relu/Clip after a quantized op when the Q clamps the
    # same range, which is only right if the range starts at the activation's lower bound. The
    # symmetric calibration gives Relu outputs (-a, a); clamp them to their true domain first.
    # The same clamp on the input and the poolings of non-negative tensors gives them all 8 bits
    # (with (-a, a) a uint8 zero point of 128 leaves 7).
    ranges = clamp_activation_ranges(src, ranges, input_range=input_range)
    # The node that makes the probabilities stays float: a quantized softmax would round them to
    # steps of 1/256 and clip them at the calibrated maximum.
    exclude = list(exclude) + output_nodes(src)
    if v.pop("float_stem", False):
        exclude += stem_nodes(src)
    return _quantize(src, dst, method, ranges, fmt=v.pop("fmt"), act=v.pop("act"), weight=v.pop("weight"),
                     per_channel=v.pop("per_channel"), reduce_range=v.pop("reduce_range"), op_types=None,
                     exclude=exclude, extra={"WeightSymmetric": True})


#: Ops whose output is non-negative when their (first / every) input is: pooling, reductions that
#: pick or average, and pure data movement.
NONNEG_PRESERVING = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMax", "ReduceMin",
                     "ReduceMean", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Identity",
                     "Concat"}


def with_float_inputs(path: str | os.PathLike, nodes: Iterable[str]) -> List[str]:
    """``nodes`` plus what must stay float so that their activation inputs really are float.

    In onnxruntime's QDQ CPU format every quantized op also quantizes its output, so leaving a
    node in float (``nodes_to_exclude``) still hands it a Q/DQ-rounded input whenever the op that
    feeds it is quantized: an outlier channel in that input still wipes out the others. This walks
    back from each node's data inputs through the ops that feed it, up to and including the
    previous weighted layer (Conv/Gemm/MatMul), and returns them too. (The TensorRT Q/DQ model puts
    Q/DQ on the inputs of weighted layers only, so there excluding the node itself is enough.)
    """
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in g.node for o in n.output}
    out = list(dict.fromkeys(nodes))
    seen = set(out)
    todo = [n for n in g.node if n.name in seen]
    while todo:
        n = todo.pop()
        for t in n.input:
            p = producer.get(t)
            if not t or t in consts or p is None or p.op_type == "Constant" or p.name in seen:
                continue
            seen.add(p.name)
            out.append(p.name)
            if p.op_type not in TRT_OP_TYPES:
                todo.append(p)   # not a weighted layer: keep walking back
    return out


def clamp_activation_ranges(path: str | os.PathLike, ranges: Dict[str, Sequence[float]],
                            input_range: Optional[Sequence[float]] = None) -> Dict[str, List[float]]:
    """Ranges clamped to the tensors' mathematical domains.

    * Relu outputs: [0, hi]; Clip outputs: the clip bounds.
    * Non-negative tensors: [0, hi]: the graph input when ``input_range`` starts at 0 or above,
      Relu/Softmax/Sigmoid outputs, and the outputs of :data:`NONNEG_PRESERVING` ops whose data
      inputs are all non-negative (a max pooling of Relu outputs, the global average of one).

    These are domains (what a tensor can hold), not statistics. Without them, symmetric ranges make
    onnxruntime's removal of Relu/Clip wrong, and give non-negative uint8 tensors zero point 128.
    """
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(a.t) for n in g.node if n.op_type == "Constant"
              for a in n.attribute if a.name == "value"}
    out = {k: [float(v[0]), float(v[1])] for k, v in ranges.items()}
    nonneg = set()
    if input_range is not None and float(input_range[0]) >= 0.0:
        nonneg.update(i.name for i in g.input if i.name not in inits)
    for n in g.node:
        if not n.output:
            continue
        data = [i for i in n.input if i and i not in inits and i not in consts]
        data = data[:1] if n.op_type not in ("Concat",) else data
        if n.op_type in ("Relu", "Softmax", "Sigmoid") or (n.op_type in NONNEG_PRESERVING and data
                                                            and all(i in nonneg for i in data)):
            nonneg.add(n.output[0])
        t = n.output[0]
        if t not in out:
            continue
        lo, hi = out[t]
        if n.op_type == "Clip":
            def bound(i):
                if len(n.input) > i and n.input[i]:
                    v = inits.get(n.input[i], consts.get(n.input[i]))
                    return None if v is None else float(v)
                return None
            cmin = bound(1)
            cmax = bound(2)
            for a in n.attribute:  # opset < 11 attributes
                if a.name == "min":
                    cmin = a.f
                if a.name == "max":
                    cmax = a.f
            lo = max(lo, cmin) if cmin is not None else lo
            hi = min(hi, cmax) if cmax is not None else hi
            out[t] = [lo, max(hi, lo)]
            if lo >= 0.0:
                nonneg.add(t)
    for t in nonneg:
        if t in out:
            out[t] = [max(out[t][0], 0.0), max(out[t][1], 0.0)]
    return out


def score_nodes(path: str | os.PathLike) -> List[str]:
    """Nodes that compute only the open-set score output (``ood_score``), not the probabilities.

    They stay float in every INT8 model: the score's constants (class means, whitening) and its
    normalisations are not what the calibration ranges were made for, and the ``unknown`` threshold
    sits in the score's tail.
    """
    import onnx

    from edge.ood import SCORE_OUTPUT

    g = onnx.load(str(path), load_external_data=False).graph
    if SCORE_OUTPUT not in {o.name for o in g.output}:
        return []
    producer = {o: n for n in g.node for o in n.output}

    def ancestors(tensor):
        seen, todo = set(), [tensor]
        while todo:
            n = producer.get(todo.pop())
            if n is not None and n.name not in seen:
                seen.add(n.name)
                todo.extend(n.input)
        return seen

    others = set().union(*(ancestors(o.name) for o in g.output if o.name != SCORE_OUTPUT))
    return sorted(ancestors(SCORE_OUTPUT) - others)


def score_tensors(path: str | os.PathLike) -> List[str]:
    """Tensors made by :func:`score_nodes`: no INT8 model quantizes them, so none is calibrated."""
    import onnx

    names = set(score_nodes(path))
    g = onnx.load(str(path), load_external_data=False).graph
    return sorted(t for n in g.node if n.name in names for t in n.output)


def output_nodes(path: str | os.PathLike) -> List[str]:
    """Names of the nodes that produce graph outputs."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    outs = {o.name for o in g.output}
    return [n.name for n in g.node if outs & set(n.output)]


# ----------------------------------------------------------------------------- inspection

def qdq_summary(path: str | os.PathLike) -> Dict:
    """Describe the Q/DQ structure of a model: what TensorRT cares about.

    Returns:
        ``{"ops": Counter of op types, "zero_points_nonzero": [...], "activation_dtypes": set,
        "weights": {node: {"per_channel": bool, "axis": int, "dtype": str}}, "quantized_nodes": [...],
        "float_nodes": [...]}``
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    const = {}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    const[n.output[0]] = a.t
    producer = {o: n for n in g.node for o in n.output}

    def tensor(name):
        t = inits.get(name) or const.get(name)
        return None if t is None else numpy_helper.to_array(t)

    nonzero, dtypes = [], set()
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = tensor(n.input[2])
            if zp is not None:
                dtypes.add(str(zp.dtype))
                if np.any(zp != 0):
                    nonzero.append(n.name)
    weights, quantized, floating = {}, [], []
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        inp = n.input[1]
        p = producer.get(inp)
        if p is not None and p.op_type == "DequantizeLinear":
            quantized.append(n.name)
            scale = tensor(p.input[1])
            axis = next((a.i for a in p.attribute if a.name == "axis"), 1)
            zp = tensor(p.input[2]) if len(p.input) > 2 else None
            weights[n.name] = {"per_channel": scale is not None and scale.size > 1, "axis": int(axis),
                               "dtype": str(zp.dtype) if zp is not None else "?",
                               "channels": int(scale.size) if scale is not None else 0}
        else:
            floating.append(n.name)
    return {"ops": collections.Counter(n.op_type for n in g.node), "zero_points_nonzero": nonzero,
            "activation_dtypes": dtypes, "weights": weights, "quantized_nodes": quantized,
            "float_nodes": floating}
