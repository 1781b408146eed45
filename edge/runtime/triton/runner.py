"""TritonRunner: a model served by NVIDIA Triton Inference Server, behind the same Runner interface.

``triton://host[:8001]/MODEL[/VERSION]`` talks gRPC (tritonclient.grpc), ``triton+http://host[:8000]/MODEL``
HTTP (tritonclient.http). The model must come from ``edge-convert --triton-repo``: its config carries the
artifact's metadata (classes, preprocessing, input form) as the parameter ``steel_edge.metadata``, which
the runner reads from the server, so the host side (preprocessing, or packing uint8 tiles when the
preprocessing is in the graph) is exactly the Jetson's.

Not run against a real Triton server on the machines this was written on (none exists there); its
tests use a stand-in client for the request building and the error paths only.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

import numpy as np

from edge.errors import EdgeError
from edge.runtime.base import Runner, TensorSpec, Timing

META_KEY = "steel_edge.metadata"
_TRITON_DTYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int8": "INT8"}


def is_triton_url(text) -> bool:
    return str(text).startswith(("triton://", "triton+grpc://", "triton+http://"))


class TritonURL(str):
    """A ``triton://`` URL that answers the few ``Path`` questions tools ask of an artifact
    (``name``, ``suffix``, ``is_file``), so reports can list it beside files."""

    @property
    def name(self) -> str:
        return self.rstrip("/").split("/", 3)[-1]

    suffix = ""

    def is_file(self) -> bool:
        return False


def parse_triton_url(url: str) -> Tuple[str, str, str, str]:
    """``(protocol, "host:port", model, version)`` of a ``triton[+http|+grpc]://host[:port]/MODEL[/VERSION]`` URL."""
    u = urlsplit(str(url))
    proto = {"triton": "grpc", "triton+grpc": "grpc", "triton+http": "http"}.get(u.scheme)
    if proto is None:
        raise EdgeError(f"not a Triton URL (triton://host:8001/MODEL): {url}")
    try:
        port = u.port or (8001 if proto == "grpc" else 8000)
    except ValueError as e:
        raise EdgeError(f"bad Triton URL {url}: {e}") from None
    parts = [p for p in u.path.split("/") if p]
    if not u.hostname or not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise EdgeError(f"Triton URL must be triton://host[:port]/MODEL[/VERSION], got {url}")
    return proto, f"{u.hostname}:{port}", parts[0], parts[1] if len(parts) == 2 else ""


class TritonRunner(Runner):
    """A model on a Triton server.

    Args:
        url: ``triton://host:8001/MODEL[/VERSION]`` (gRPC) or ``triton+http://host:8000/MODEL``.
        meta: The artifact metadata (default: read from the model's config on the server).
        warmup: Inference calls made by ``activate()``.
        timeout: Seconds per request (client side).
        client: A ready client with tritonclient's interface (tests).
    """

    backend = "triton"

    def __init__(self, url: str, meta: Optional[Dict[str, Any]] = None, warmup: int = 1, timeout: float = 10.0,
                 client=None):
        self.url = str(url)
        self.protocol, self.address, self.model, self.version = parse_triton_url(self.url)
        self.timeout = float(timeout)
        self._lib = None
        self.client = client if client is not None else self._make_client()
        config = self._config()
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        if meta is None:
            text = ((config.get("parameters") or {}).get(META_KEY) or {}).get("string_value")
            if not text:
                raise EdgeError(f"Triton model {self.model} has no '{META_KEY}' parameter in its config: write the "
                                "repository with edge-convert --triton-repo")
            try:
                meta = json.loads(text)
            except ValueError:
                raise EdgeError(f"Triton model {self.model}: '{META_KEY}' is not JSON") from None
        super().__init__(self.url, meta, warmup)
        self.artifact_name = f"{self.model}@{self.address}"

    # -- client -----------------------------------------------------------------------
    def _module(self):
        if self._lib is None:
            try:
                if self.protocol == "grpc":
                    import tritonclient.grpc as lib
                else:
                    import tritonclient.http as lib
            except ImportError:
                raise EdgeError(f"{self.url} needs tritonclient[{self.protocol}] (pip install "
                                "'steel-edge[plant]')") from None
            self._lib = lib
        return self._lib

    def _make_client(self):
        lib = self._module()
        try:
            return lib.InferenceServerClient(url=self.address)
        except Exception as e:  # tritonclient raises its own and plain exceptions for bad addresses
            raise EdgeError(f"Triton {self.address}: {' '.join(str(e).split())}") from None

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeError:
            raise
        except Exception as e:  # InferenceServerException, grpc / HTTP errors: one line
            msg = getattr(e, "message", None)
            msg = msg() if callable(msg) else (msg or str(e))
            raise EdgeError(f"Triton {self.address} model {self.model}: {what} failed: "
                            f"{' '.join(str(msg).split()) or type(e).__name__}") from None

    def _config(self) -> Dict[str, Any]:
        """The model config as a dict (gRPC's protobuf converted; HTTP gives JSON)."""
        if self.protocol == "grpc":
            r = self._call("get_model_config", self.client.get_model_config, self.model, self.version,
                           as_json=True, client_timeout=self.timeout)
            cfg = r.get("config", r) if isinstance(r, dict) else r
        else:
            cfg = self._call("get_model_config", self.client.get_model_config, self.model, self.version)
        if not isinstance(cfg, dict):
            raise EdgeError(f"Triton model {self.model}: unexpected config answer")
        if "max_batch_size" in cfg:
            cfg["max_batch_size"] = int(cfg["max_batch_size"])
        return cfg

    # -- Runner ---------------------------------------------------------------------------
    def activate_impl(self) -> None:
        ready = self._call("is_model_ready", self.client.is_model_ready, self.model, self.version)
        if not ready:
            raise EdgeError(f"Triton {self.address}: model {self.model}"
                            f"{' version ' + self.version if self.version else ''} is not ready")

    def deactivate_impl(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing a broken channel must not hide the real error
                pass

    @property
    def input_spec(self) -> TensorSpec:
        i = self.meta["input"]
        return TensorSpec(i["name"], tuple(i["shape"]), i.get("dtype", "float32"))

    @property
    def output_spec(self) -> TensorSpec:
        o = self.meta["output"]
        return TensorSpec(o["name"], tuple(o["shape"]), o.get("dtype", "float32"))

    @property
    def max_batch(self) -> Optional[int]:
        """The model's ``max_batch_size`` on the server (larger batches go in chunks)."""
        if self.max_batch_size > 0:
            return self.max_batch_size
        return super().max_batch

    def build_request(self, batch: np.ndarray):
        """The tritonclient ``InferInput`` / ``InferRequestedOutput`` for one chunk."""
        lib = self._module() if self._lib is None else self._lib
        spec = self.input_spec
        dtype = _TRITON_DTYPES.get(str(batch.dtype))
        if dtype is None:
            raise EdgeError(f"no Triton type for a {batch.dtype} batch")
        inp = lib.InferInput(spec.name, list(batch.shape), dtype)
        inp.set_data_from_numpy(batch)
        outs = [lib.InferRequestedOutput(self.output_spec.name)]
        if self._score_name:  # the open-set score output (convert.triton lists it for a model with an ood block)
            outs.append(lib.InferRequestedOutput(self._score_name))
        return [inp], outs

    @property
    def _score_name(self) -> Optional[str]:
        from edge.ood import SCORE_OUTPUT

        return SCORE_OUTPUT if self.meta.get("ood") else None

    def infer_impl(self, batch: np.ndarray) -> Tuple[np.ndarray, Timing]:
        inputs, outputs = self.build_request(batch)
        t0 = time.perf_counter()
        kw = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        res = self._call("infer", self.client.infer, self.model, inputs, model_version=self.version,
                         outputs=outputs, **kw)
        probs = res.as_numpy(self.output_spec.name)
        if probs is None:
            raise EdgeError(f"Triton model {self.model} returned no '{self.output_spec.name}' output")
        probs = np.asarray(probs, dtype=np.float32)
        if probs.shape != (len(batch), len(self.classes)):
            raise EdgeError(f"Triton model {self.model} returned shape {probs.shape}, expected "
                            f"({len(batch)}, {len(self.classes)})")
        timing = Timing(compute_ms=(time.perf_counter() - t0) * 1e3)
        if self._score_name:
            score = res.as_numpy(self._score_name)
            if score is None or np.size(score) != len(batch):
                raise EdgeError(f"Triton model {self.model} returned no '{self._score_name}' output of shape "
                                f"({len(batch)}, 1) though its metadata has an open-set threshold")
            return (probs, np.asarray(score, dtype=np.float32).reshape(len(batch))), timing
        return probs, timing
