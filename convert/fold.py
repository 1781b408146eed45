"""Fold the host preprocessing into an ONNX artifact: it then takes uint8 gray tiles at the camera's size.

The artifact's input becomes ``uint8 (N, tile_h, tile_w, 1)`` NHWC; the graph casts to float,
resizes to the model's input size and scales, exactly as :class:`edge.preprocess.Preprocess` does
on the host, then runs the original network. On a Jetson, TensorRT runs it on the GPU; on a CPU,
onnxruntime runs it in its own threads (no Python, no GIL).

The resize is linear in the pixels and separable (OpenCV's INTER_AREA / INTER_LINEAR /
INTER_NEAREST are), so it is two constant matrices: ``Y = A_h · X · A_w^T``. Each matrix is
measured from OpenCV itself (``cv2.resize`` of an identity image in float32), so the graph uses
OpenCV's own weights. Where a matrix is block diagonal with one repeated block (INTER_AREA at a
rational ratio: 200 → 160 is 40 blocks of 5 → 4 pixels) the graph uses that block through a
Reshape, about 40x fewer multiply-adds than the dense matrix. A ``Round`` after the resize
reproduces the host's uint8 intermediate (``cv2.resize`` on uint8 rounds half to even, as ONNX
``Round`` does). INTER_AREA, the preprocessing of every model here, is then exact: OpenCV computes
it with these float weights (compact model, NEU test split: max abs probability difference 0,
docs/results/fold-parity.md). INTER_LINEAR on uint8 uses 11-bit fixed-point weights in OpenCV, so
there the graph is within one grey level of the host. Only MatMul, Reshape, Cast, Round, Mul, Add, Concat: operators TensorRT 8.5+ and
onnxruntime both run.

Example:
    >>> from convert.fold import fold_preprocess
    >>> fold_preprocess("out/model.int8cpu.onnx", "out/model.int8cpu.onnx", tile=(200, 200))
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from edge.errors import EdgeError
from edge.preprocess import SCALES, Preprocess

log = logging.getLogger(__name__)

#: ``input.form`` of an artifact that takes uint8 tiles (metadata); float artifacts have "float".
UINT8_TILES = "uint8_tiles"


def resize_matrix(n_in: int, n_out: int, interpolation: str = "area") -> np.ndarray:
    """The (n_out, n_in) matrix of OpenCV's 1-D resize: ``y = A @ x`` (float64).

    Measured by resizing an identity image with ``cv2.resize`` in float32, so it holds OpenCV's
    own weights for ``interpolation``.
    """
    import cv2

    if n_in == n_out:
        return np.eye(n_in)
    interp = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interpolation]
    eye = np.eye(n_in, dtype=np.float32)
    # rows of the identity resized along the width: row j is the response to an impulse at j
    m = cv2.resize(eye, (n_out, n_in), interpolation=interp)  # (n_in, n_out)
    return m.T.astype(np.float64)


def block_of(a: np.ndarray) -> Optional[np.ndarray]:
    """The repeated block ``B`` when ``a == kron(I_g, B)`` (g > 1), else None."""
    n_out, n_in = a.shape
    g = math.gcd(n_out, n_in)
    if g <= 1:
        return None
    bo, bi = n_out // g, n_in // g
    b = a[:bo, :bi]
    if np.allclose(a, np.kron(np.eye(g), b), atol=1e-7):
        return b
    return None


def host_equivalent(tiles: np.ndarray, prep: Preprocess, rounding: bool = True) -> np.ndarray:
    """What the folded graph computes, in numpy (float64), for uint8 tiles (N, th, tw) → (N, H, W, C).

    For tests and for understanding; the graph is checked against it and against the host path.
    """
    th, tw = tiles.shape[1:3]
    ah = resize_matrix(th, prep.height, prep.interpolation)
    aw = resize_matrix(tw, prep.width, prep.interpolation)
    y = ah @ tiles.astype(np.float64) @ aw.T
    if rounding:
        y = np.round(y)
    a, b = SCALES[prep.scale]
    y = y * a + b
    return np.repeat(y[..., None], prep.channels, axis=-1)


def _resize_nodes(h, x: str, n_in: int, n_out: int, axis: str, interp: str, inits: list, nodes: list,
                  other: int, tag: str) -> Tuple[str, Dict]:
    """Nodes resizing tensor ``x`` (N, rows, cols) along ``axis`` ('w': cols, 'h': rows)."""
    from onnx import numpy_helper

    a = resize_matrix(n_in, n_out, interp)
    if n_in == n_out:
        return x, {"axis": axis, "kind": "identity"}
    blk = block_of(a)
    name = f"fold_{tag}"
    if blk is not None:
        g = n_in // blk.shape[1]
        bo, bi = blk.shape
        if axis == "w":   # (N, R, n_in) → (N, R, g, bi) @ B^T (bi, bo) → (N, R, n_out)
            inits.append(numpy_helper.from_array(blk.T.astype(np.float32), f"{name}_B"))
            inits.append(numpy_helper.from_array(np.array([0, other, g, bi], np.int64), f"{name}_s1"))
            inits.append(numpy_helper.from_array(np.array([0, other, n_out], np.int64), f"{name}_s2"))
            nodes += [h.make_node("Reshape", [x, f"{name}_s1"], [f"{name}_r1"], name=f"{name}_reshape1"),
                      h.make_node("MatMul", [f"{name}_r1", f"{name}_B"], [f"{name}_mm"], name=f"{name}_matmul"),
                      h.make_node("Reshape", [f"{name}_mm", f"{name}_s2"], [f"{name}_out"], name=f"{name}_reshape2")]
        else:             # (N, n_in, C) → (N, g, bi, C); B (bo, bi) @ → (N, g, bo, C) → (N, n_out, C)
            inits.append(numpy_helper.from_array(blk.astype(np.float32), f"{name}_B"))
            inits.append(numpy_helper.from_array(np.array([0, g, bi, other], np.int64), f"{name}_s1"))
            inits.append(numpy_helper.from_array(np.array([0, n_out, other], np.int64), f"{name}_s2"))
            nodes += [h.make_node("Reshape", [x, f"{name}_s1"], [f"{name}_r1"], name=f"{name}_reshape1"),
                      h.make_node("MatMul", [f"{name}_B", f"{name}_r1"], [f"{name}_mm"], name=f"{name}_matmul"),
                      h.make_node("Reshape", [f"{name}_mm", f"{name}_s2"], [f"{name}_out"], name=f"{name}_reshape2")]
        return f"{name}_out", {"axis": axis, "kind": "block", "blocks": g, "block": [bo, bi]}
    if axis == "w":
        inits.append(numpy_helper.from_array(a.T.astype(np.float32), f"{name}_A"))
        nodes.append(h.make_node("MatMul", [x, f"{name}_A"], [f"{name}_out"], name=f"{name}_matmul"))
    else:
        inits.append(numpy_helper.from_array(a.astype(np.float32), f"{name}_A"))
        nodes.append(h.make_node("MatMul", [f"{name}_A", x], [f"{name}_out"], name=f"{name}_matmul"))
    return f"{name}_out", {"axis": axis, "kind": "dense", "shape": list(a.shape)}


def fold_model(model, prep: Preprocess, tile: Tuple[int, int], rounding: bool = True):
    """A copy of ONNX ``model`` (float NHWC input) whose input is uint8 (N, tile_h, tile_w, 1).

    Returns:
        (new model, description dict for the metadata).
    """
    import copy

    from onnx import TensorProto, helper as h, numpy_helper

    th, tw = int(tile[0]), int(tile[1])
    if th < 1 or tw < 1:
        raise EdgeError(f"tile size must be positive, got {th}x{tw}")
    m = copy.deepcopy(model)
    g = m.graph
    init_names = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names]
    if len(inputs) != 1:
        raise EdgeError(f"folding needs a model with one input, this one has {len(inputs)}")
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise EdgeError(f"input {inp.name!r} is not float32 (already folded?)")
    dims = inp.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    if len(shape) != 4 or shape[1:] != [prep.height, prep.width, prep.channels]:
        raise EdgeError(f"input {inp.name!r} has shape {shape}, the preprocessing makes "
                        f"(N, {prep.height}, {prep.width}, {prep.channels})")
    name = inp.name
    inner = f"{name}__preprocessed"
    for node in g.node:  # the original network now reads the preprocessed tensor
        for k, v in enumerate(node.input):
            if v == name:
                node.input[k] = inner
    for o in g.output:
        if o.name == name:
            raise EdgeError("the model's input is also an output; cannot fold")

    nodes, inits = [], []
    a, b = SCALES[prep.scale]
    inits.append(numpy_helper.from_array(np.array([0, th, tw], np.int64), "fold_shape_in"))
    nodes += [h.make_node("Cast", [name], ["fold_f"], to=TensorProto.FLOAT, name="fold_cast"),
              h.make_node("Reshape", ["fold_f", "fold_shape_in"], ["fold_x"], name="fold_squeeze")]
    x, dw = _resize_nodes(h, "fold_x", tw, prep.width, "w", prep.interpolation, inits, nodes, th, "w")
    x, dh = _resize_nodes(h, x, th, prep.height, "h", prep.interpolation, inits, nodes, prep.width, "h")
    resized = (th, tw) != (prep.height, prep.width)
    if rounding and resized:
        nodes.append(h.make_node("Round", [x], ["fold_round"], name="fold_round"))
        x = "fold_round"
    if a != 1.0:
        inits.append(numpy_helper.from_array(np.array(a, np.float32), "fold_scale"))
        nodes.append(h.make_node("Mul", [x, "fold_scale"], ["fold_scaled"], name="fold_mul"))
        x = "fold_scaled"
    if b != 0.0:
        inits.append(numpy_helper.from_array(np.array(b, np.float32), "fold_offset"))
        nodes.append(h.make_node("Add", [x, "fold_offset"], ["fold_shifted"], name="fold_add"))
        x = "fold_shifted"
    inits.append(numpy_helper.from_array(np.array([0, prep.height, prep.width, 1], np.int64), "fold_shape_out"))
    if prep.channels == 1:
        nodes.append(h.make_node("Reshape", [x, "fold_shape_out"], [inner], name="fold_unsqueeze"))
    else:
        nodes += [h.make_node("Reshape", [x, "fold_shape_out"], ["fold_gray"], name="fold_unsqueeze"),
                  h.make_node("Concat", ["fold_gray"] * prep.channels, [inner], axis=3, name="fold_channels")]
    new_nodes = nodes + list(g.node)
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(inits)
    batch = dims[0]
    new_in = h.make_tensor_value_info(name, TensorProto.UINT8, [batch.dim_param or (batch.dim_value or "N"), th, tw, 1])
    idx = [i for i, v in enumerate(g.input) if v.name == name][0]
    g.input.remove(g.input[idx])
    g.input.insert(idx, new_in)
    desc = {"form": UINT8_TILES, "tile": [th, tw], "resize": [dw, dh], "interpolation": prep.interpolation,
            "rounding": bool(rounding and resized), "scale": prep.scale,
            "how": "Cast, separable resize as constant matrices measured from cv2.resize (MatMul), Round, scale"}
    return m, desc


def fold_preprocess(src, dst, tile: Tuple[int, int], rounding: bool = True, meta: Optional[Dict] = None) -> Dict:
    """Fold the artifact ``src``'s preprocessing into its graph; write ``dst`` and ``dst``'s metadata.

    ``src`` may equal ``dst`` (rewritten in place, atomically).

    Returns:
        The metadata written for ``dst``.
    """
    import onnx

    from edge.fsutil import atomic_path
    from edge.metadata import preprocess_of, read_meta, write_meta

    src, dst = Path(src), Path(dst)
    meta = dict(meta if meta is not None else read_meta(src))
    if (meta.get("input") or {}).get("form") == UINT8_TILES:
        raise EdgeError(f"{src} already takes uint8 tiles")
    prep = preprocess_of(meta)
    model = onnx.load(str(src))
    folded, desc = fold_model(model, prep, tile, rounding=rounding)
    onnx.checker.check_model(folded)
    with atomic_path(dst) as tmp:
        onnx.save(folded, str(tmp))
    inp = dict(meta.get("input") or {})
    batch = (inp.get("shape") or [-1])[0]
    inp.update({"shape": [batch, int(tile[0]), int(tile[1]), 1], "dtype": "uint8", "layout": "NHWC",
                "form": UINT8_TILES, "tile": [int(tile[0]), int(tile[1])]})
    meta.update({"artifact": dst.name, "input": inp, "preprocess_in_graph": desc})
    write_meta(dst, meta)
    return meta


def fold_artifacts(stage, files, tile: Tuple[int, int], images: np.ndarray, images_from: str) -> Dict[str, Dict]:
    """Fold every ONNX artifact ``files`` of ``stage`` in place; check each against its float form.

    The check runs the float artifact on the host-preprocessed images and the folded one on the
    uint8 tiles (``images`` resized to ``tile`` by :class:`edge.preprocess.TileInput` if needed),
    and records the max abs probability difference and the top-1 agreement in the metadata
    (``checks.fold_vs_host``).

    Args:
        stage: Folder holding the artifacts.
        files: ONNX file names to fold.
        tile: (height, width) of the camera tiles the artifacts will take.
        images: uint8 gray images (N, h, w) for the check (validation images, never test).
        images_from: Where the images come from (recorded).
    """
    from convert.export import compare, ort_predict
    from edge.metadata import preprocess_of, read_meta, write_meta
    from edge.runtime.onnxrt.session import level_of, session
    from edge.preprocess import TileInput

    tiles = TileInput(int(tile[0]), int(tile[1]))(images)
    out = {}
    for name in files:
        path = Path(stage) / name
        meta = read_meta(path)
        level = level_of(meta)
        ref = ort_predict(session(path, level=level), preprocess_of(meta)(images))
        meta = fold_preprocess(path, path, tile, meta=meta)
        c = compare(ref, ort_predict(session(path, level=level), tiles))
        c["images_from"] = images_from
        meta.setdefault("checks", {})["fold_vs_host"] = c
        write_meta(path, meta)
        out[name] = c
        log.info(f"{name}: uint8 {tile[0]}x{tile[1]} tiles in, preprocessing in the graph; vs host preprocessing "
                 f"max abs prob diff {c['max_abs_diff']:.2e}, top-1 agreement {c['top1_agreement']:.1%} on {images_from}")
    return out
