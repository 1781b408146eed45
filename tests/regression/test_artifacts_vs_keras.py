"""Every artifact kind against the FP32 Keras model, with per-precision tolerances (issue 5).

* FP32 (ONNX, engine): max abs probability difference <= 1e-4 and identical top-1.
* FP16 (ONNX, engine): max abs probability difference <= 5e-3.
* INT8 (Q/DQ for TensorRT, CPU int8, engine): top-1 agreement >= 98 % and accuracy drop <= 1 pp.

On the embedded sample (all 60 images: fidelity to the Keras model, whatever split an image is in)
and, where data/NEU-CLS and the committed compact model exist, on the full NEU test split.
Artifacts are opened as edge-bench opens them (:func:`bench.runners.open_runner`). ORT artifacts run
here; TensorRT engines where TensorRT is present, skipped with the reason otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.core import predict
from edge.metrics import compare
from bench.runners import open_runner
from edge.data import load_images, select
from edge.formats import FORMATS, TOLERANCES, by_name
from edge.runtime import load_runner

#: (format name, tolerance kind): every row of the one table of formats (edge/formats.py)
KINDS = [(f.name, f.tolerance) for f in FORMATS]

#: Measured shortfalls against the INT8 tolerance (tolerances unchanged). These cases are expected to
#: fail with an AssertionError (any other error still fails the suite) until the converter improves.
#: None at present. Until issue 14 the CPU int8 default (qdq-u8s8-pc, all-int8) lost 3 of 270 test
#: images vs Keras' 0 (drop 1.11 pp > 1 pp) on the v4 models/neu-compact; the default since, qdq-u8s8-pc-fs
#: (stem in float), chosen on val and speed (docs/results/cpu-int8-speed.md), loses 1 (0.37 pp). The
#: committed model since 2 Dec 2026 (recipe v5 seed 42 with its open-set score, INT8 calibrated with minmax
#: ranges, the default for such a model): every artifact 99.63 % on the test split, top-1 agreement 100 %
#: with Keras (docs/bench/neu-test.md).
KNOWN_SHORTFALL: dict = {}


def _kinds(where):
    return [pytest.param(n, k, id=n, marks=pytest.mark.xfail(raises=AssertionError, strict=True,
                                                               reason=KNOWN_SHORTFALL[(where, n)]))
            if (where, n) in KNOWN_SHORTFALL else pytest.param(n, k, id=n) for n, k in KINDS]



def _artifact(outdir: Path, name: str) -> Path:
    fmt = by_name(name)
    if fmt.backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            pytest.skip("TensorRT is not installed here: engines are neither built nor run (the ONNX artifacts are tested)")
        found = sorted(outdir.glob(fmt.file.replace("{tag}", "*")))
        if not found:
            pytest.skip(f"no {fmt.file} in {outdir}: edge-convert built no engine here (no GPU?)")
        return found[0]
    path = outdir / fmt.file
    assert path.is_file(), f"edge-convert did not write {fmt.file}"
    return path


def check(kind: str, labels, ref: np.ndarray, out: np.ndarray, classes, files) -> dict:
    """Assert the tolerance of ``kind``; return the comparison."""
    r = compare(labels, ref, out, classes, files)
    d, tol = r["drift"], TOLERANCES[kind]
    shown = [f"{x['file']}: {x['reference']} -> {x['artifact']}" for x in r["disagreements"][:5]]
    if kind == "fp32":
        assert d["max_abs_prob_diff"] <= tol["max_abs"], d
        assert d["top1_agreement"] >= tol["top1_agreement"], shown   # 1.0: identical top-1
    elif kind == "fp16":
        assert d["max_abs_prob_diff"] <= tol["max_abs"], d
    else:
        assert d["top1_agreement"] >= tol["top1_agreement"], (d["top1_agreement"], shown)
        assert d["accuracy_delta_pp"] >= -tol["drop_pp"], (r["reference_accuracy"], r["accuracy"], shown)
    return r


def _reference(case):
    with load_runner(case.model, backend="keras") as r:
        ds = select(case.data, case.split, case.model.parent / "split.csv", classes=r.classes)
        images = load_images(ds)
        return ds.labels, images, predict(r, images), list(r.classes), [s.rel(ds.root) for s in ds.samples]


@pytest.fixture(scope="module")
def sample_reference(sample_case):
    return _reference(sample_case)


@pytest.fixture(scope="module")
def full_reference(full_case):
    return _reference(full_case)


def _run(case, reference, name, kind):
    if kind == "int8" and case.int8_skip:
        pytest.skip(case.int8_skip)
    labels, images, ref, classes, files = reference
    art = _artifact(case.outdir, name)
    with open_runner(art) as r:
        assert list(r.classes) == classes
        out = predict(r, images)
    return check(kind, labels, ref, out, classes, files)


@pytest.mark.parametrize("name,kind", _kinds("sample"))
def test_sample_artifact_vs_keras(sample_case, sample_reference, name, kind):
    _run(sample_case, sample_reference, name, kind)
    assert len(sample_reference[0]) == 60


@pytest.mark.parametrize("name,kind", _kinds("full"))
def test_full_test_split_vs_keras(full_case, full_reference, name, kind):
    _run(full_case, full_reference, name, kind)
    assert len(full_reference[0]) >= 250        # the 15 % test split of 1,800 images


def test_full_conversion_keeps_the_open_set_score(full_case):
    """An open-set committed model: every reduced-precision artifact passes the score's drift gate (val, criteria
    of convert/score_gate.py), INT8 with the minmax ranges edge-convert picks for it (docs/results/open-set.md)."""
    from edge.metadata import read_meta

    if not read_meta(full_case.model).get("ood"):
        pytest.skip(f"{full_case.model} has no open-set score output")
    for name in ("fp16", "int8", "int8-cpu"):
        meta = read_meta(_artifact(full_case.outdir, name))
        gate = meta["ood"]["drift_gate"]
        assert gate["passed"] and gate["own_threshold"] is None, (name, gate)   # at FP32's threshold
        assert gate["max_abs_diff"] <= gate["max_diff_of_spread"] * gate["fp32_spread_p1_p99"]
        if name != "fp16":
            assert meta["calibration"]["method"] == "minmax" and meta["drift_gate"]["passed"], name
