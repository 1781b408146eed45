"""The TensorRT version -> API branch map, tested here only: builder and runtime pick the same branch for
every version (one fork, one mapping). tests/convert/test_tensorrt_wheels.py (-m network) checks it against
the real bindings wheels."""

import pytest

from edge.errors import EdgeError
from edge.runtime.tensorrt import compat


@pytest.mark.parametrize("version,branch", [("8.5.2", "8.5"), ("8.5.2.2", "8.5"), ("8.6.1", "8.6"), ("8.6.2.3", "8.6"),
                                            ("9.3.0", "10"), ("10.0.1", "10"), ("10.3.0.30", "10"), ("10.16.1", "10"),
                                            ("11.0.0", "11"), ("11.4.0.106", "11"), ("12.0", "11")])
def test_builder_and_runtime_agree(version, branch):
    assert compat.builder_branch(version) == branch
    assert compat.runtime_branch(version) == branch
    assert compat.builder_branch(compat.TRTVersion.parse(version)) == branch


def test_every_branch_has_builder_and_runtime_names():
    assert set(compat.BUILDER_API) == set(compat.RUNTIME_API) == {"8.5", "8.6", "10", "11"}


def test_too_old_is_refused_by_both():
    for fn in (compat.builder_branch, compat.runtime_branch):
        with pytest.raises(EdgeError, match="8.4.3 is too old: .* needs 8.5 or newer"):
            fn("8.4.3")


def test_missing_api_names_dotted_attributes():
    class Flag:
        FP16 = 1

    class FakeTRT:  # a stand-in only to test the name walk, not TensorRT
        BuilderFlag = Flag

    assert compat.missing_api(FakeTRT, ["BuilderFlag.FP16", "BuilderFlag.INT8", "Runtime"]) == ["BuilderFlag.INT8", "Runtime"]
