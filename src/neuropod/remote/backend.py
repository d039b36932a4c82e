"""``load_remote``: a model served elsewhere, behind the same model object as a local one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from neuropod.backends.base import Backend
from neuropod.errors import BackendUnavailable, OptionError
from neuropod.model import NeuropodModel
from neuropod.package.config import ModelConfig
from neuropod.remote.metadata import config_from_metadata
from neuropod.remote.url import ModelURL, parse_model_url

#: The load options of remote models, by protocol (besides ``require_all_inputs``).
REMOTE_OPTIONS = {"http": ("timeout", "binary", "headers"), "grpc": ("timeout", "headers")}


class Transport(Protocol):
    """One protocol's way to reach a served model (``HttpTransport``, ``GrpcTransport``)."""

    def model_metadata(self) -> dict[str, Any]:
        """The model's metadata in the protocol's JSON form."""

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on the server."""

    def close(self) -> None:
        """Close the connection. Idempotent."""


class RemoteBackend(Backend):
    """Runs a model on a server of the Open Inference Protocol.

    Made by ``load_remote``; unlike other backends it has no package, only a connection.

    Args:
        transport: the connection to the served model.
    """

    def __init__(self, transport: Transport):
        # Backend.__init__ takes a package, which a remote model does not have.
        self.visible_gpu = None
        self._transport = transport

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._transport.infer(inputs)

    def close(self) -> None:
        self._transport.close()


@dataclass(frozen=True)
class RemoteSource:
    """What a remote model is loaded from: its URL and the config read from the server."""

    config: ModelConfig
    path: str

    def close(self) -> None:
        """Nothing to release: the transport holds the connection."""


def load_remote(
    url: str,
    visible_gpu: int | None = None,
    *,
    use_ope: bool = False,
    **options: Any,
) -> NeuropodModel:
    """Open a model served by a server of the Open Inference Protocol (``neuropod serve``, Triton...).

    ``load_neuropod`` calls this for a URL. The model's specs come from the server's metadata,
    and the model object checks every call against them before anything is sent, so a mistake
    raises the same ``ValidationError`` as with a local model.

    Args:
        url: ``http[s]://host:port[/prefix]/v2/models/NAME[/versions/V]`` or
            ``grpc[s]://host:port/v2/models/NAME[/versions/V]``.
        visible_gpu: must be ``None``: the server chooses its devices.
        use_ope: must be ``False``: the server chooses how it runs the model.
        **options: ``require_all_inputs`` (as for local models); ``timeout``: seconds a call may
            take before ``InferenceTimeout`` (default ``None``, no limit; over HTTP it bounds
            each step: connecting, sending, waiting); ``headers``: a dict sent with every
            request, e.g. ``{"Authorization": "Bearer ..."}``; over HTTP, ``binary``: send
            tensors as binary data (default ``True``) rather than JSON.

    Returns:
        A ``NeuropodModel`` whose ``path`` is the URL; closing it closes the connection.

    Raises:
        PackageError: the URL is malformed, the server cannot be reached, or it serves no such
            model.
        OptionError: an option is unknown or invalid.
        InferenceTimeout: the server did not answer in time.
        BackendUnavailable: the protocol's client library (httpx, grpcio) is not installed.

    >>> with load_remote("http://127.0.0.1:8000/v2/models/adder") as model:  # doctest: +SKIP
    ...     model.infer({"x": np.ones(3, np.float32), "y": np.ones(3, np.float32)})
    {'out': array([2., 2., 2.], dtype=float32)}
    """
    target = parse_model_url(url)
    if visible_gpu is not None:
        raise OptionError(
            f"visible_gpu does not apply to a remote model ({url}): the server chooses its devices"
        )
    if use_ope:
        raise OptionError(
            f"use_ope does not apply to a remote model ({url}): the server chooses how it runs models"
        )
    accepted = REMOTE_OPTIONS[target.protocol]
    unknown = sorted(set(options) - {"require_all_inputs", *accepted})
    if unknown:
        raise OptionError(
            f"load_neuropod() got unknown option(s) {', '.join(map(repr, unknown))} for a remote "
            f"{target.protocol} model; accepted options: {', '.join(['require_all_inputs', *accepted])}"
        )
    model_options = {k: options.pop(k) for k in ("require_all_inputs",) if k in options}
    transport = _transport(target, **options)
    try:
        where = f"model '{target.model}' at {url}"
        config = config_from_metadata(transport.model_metadata(), target.model, where)
        return NeuropodModel(RemoteSource(config, url), RemoteBackend(transport), **model_options)
    except BaseException:
        transport.close()
        raise


def _transport(
    target: ModelURL,
    *,
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    binary: bool = True,
) -> Transport:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        raise OptionError(f"timeout must be None or a number of seconds > 0, got {timeout!r}")
    if not isinstance(binary, bool):
        raise OptionError(f"binary must be True or False, got {binary!r}")
    if headers is None:
        headers = {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
    ):
        raise OptionError(f"headers must be a dict of str to str, got {headers!r}")
    seconds = None if timeout is None else float(timeout)
    # Each protocol's client library is imported only when a model of it is opened.
    try:
        if target.protocol == "grpc":
            from neuropod.remote.grpc_transport import GrpcTransport

            return GrpcTransport(target, timeout=seconds, headers=headers)
        from neuropod.remote.http_transport import HttpTransport
    except ImportError as exc:
        raise BackendUnavailable(
            f"Remote models over {target.protocol} need a package that is not installed ({exc}); "
            f"install it with: pip install 'neuropod[remote]'"
        ) from exc
    return HttpTransport(target, timeout=seconds, binary=binary, headers=headers)
