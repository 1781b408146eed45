"""Builder and runtime pick the same TensorRT API branch for every version (one fork, one mapping)."""

import pytest

from edge.errors import EdgeError
from edge.runtime.tensorrt import compat


@pytest.mark.parametrize("version,branch", [("8.5.2", "8.5"), ("8.6.2", "8.6"), ("9.3.0", "10"),
                                            ("10.3.0", "10"), ("10.16.1", "10"), ("11.4.0", "11"), ("12.0", "11")])
def test_builder_and_runtime_agree(version, branch):
    assert compat.builder_branch(version) == branch
    assert compat.runtime_branch(version) == branch


def test_too_old_is_refused_by_both():
    for fn in (compat.builder_branch, compat.runtime_branch):
        with pytest.raises(EdgeError, match="8.5 or newer"):
            fn("8.4.3")


def test_missing_api_names_dotted_attributes():
    class Flag:
        FP16 = 1

    class FakeTRT:  # a stand-in only to test the name walk, not TensorRT
        BuilderFlag = Flag

    assert compat.missing_api(FakeTRT, ["BuilderFlag.FP16", "BuilderFlag.INT8", "Runtime"]) == ["BuilderFlag.INT8", "Runtime"]
