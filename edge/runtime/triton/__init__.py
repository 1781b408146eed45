"""Triton Inference Server behind the Runner interface (``triton://host:8001/model``)."""

from edge.runtime.triton.runner import TritonRunner, TritonURL, is_triton_url, parse_triton_url

__all__ = ["TritonRunner", "TritonURL", "is_triton_url", "parse_triton_url"]
