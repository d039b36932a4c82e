"""``RemoteBackend``: a model served elsewhere, behind the same backend contract as a local one.

``RemoteBackend`` holds what both protocols share (the URL, the options, the config read from
the server's metadata); ``HttpBackend`` (``http_backend``) and ``GrpcBackend``
(``grpc_backend``) connect and call. Their option declarations live here, so that options are
checked without importing httpx or grpc.
"""

from __future__ import annotations

import importlib
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neuropod.backends.base import Backend
from neuropod.errors import BackendUnavailable, OptionError
from neuropod.options import BOOLEAN, Check, Options, number_above, option, optional
from neuropod.package.config import ModelConfig
from neuropod.remote.metadata import config_from_metadata
from neuropod.remote.url import ModelURL, parse_model_url
from neuropod.spec.elements import BytesConformer

if TYPE_CHECKING:
    from neuropod.model import NeuropodModel


def _are_headers(value: Any) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(isinstance(key, str) and isinstance(item, str) for key, item in value.items())
    )


_TIMEOUT = optional(number_above(0, "seconds"))
_HEADERS = Check("a dict of str to str", _are_headers)


@dataclass(frozen=True)
class HttpOptions(Options):
    """The load options of a model served over HTTP/REST.

    Attributes:
        timeout: seconds each step of a call (connect, send, wait) may take, or ``None``.
        binary: send and receive tensors as binary data (else as JSON).
        headers: sent with every request, e.g. ``{"Authorization": "Bearer ..."}``.
    """

    where = "a remote http model"

    timeout: float | None = option(None, _TIMEOUT)
    binary: bool = option(True, BOOLEAN)
    headers: Mapping[str, str] | None = option(None, _HEADERS)


@dataclass(frozen=True)
class GrpcOptions(Options):
    """The load options of a model served over gRPC.

    Attributes:
        timeout: seconds a call may take (its deadline), or ``None``.
        headers: sent with every call as gRPC metadata.
    """

    where = "a remote grpc model"

    timeout: float | None = option(None, _TIMEOUT)
    headers: Mapping[str, str] | None = option(None, _HEADERS)


#: Each protocol's backend, imported (with its client library) when a model of it is opened.
_BACKENDS = {
    "http": ("neuropod.remote.http_backend", "HttpBackend", HttpOptions),
    "grpc": ("neuropod.remote.grpc_backend", "GrpcBackend", GrpcOptions),
}


class RemoteBackend(Backend):
    """Runs a model on a server of the Open Inference Protocol. It has no package: its
    ``config`` comes from the server's metadata and its ``path`` is the model's URL.

    Subclasses connect in ``_connect`` and implement ``model_metadata``, ``infer`` and ``close``.

    Args:
        url: the model's URL.
        **options: the protocol's options (``HttpOptions``, ``GrpcOptions``).

    Raises:
        OptionError: an option is unknown or invalid.
        PackageError: the server cannot be reached, serves no such model, or its metadata is
            not usable (timeouts raise ``InferenceTimeout``).
    """

    def __init__(self, url: ModelURL, **options: Any):
        self._url = url
        self._where = f"model '{url.model}' at {url.url}"
        settings = self.declared_options().parse(options)
        self._timeout: float | None = None if settings.timeout is None else float(settings.timeout)
        self._headers: dict[str, str] = dict(settings.headers or {})
        self._settings: Any = settings
        self._connect()
        try:
            self._config = config_from_metadata(self.model_metadata(), url.model, self._where)
        except BaseException:
            self.close()
            raise
        # BYTES outputs arrive as bytes: text for string outputs, as they are for bytes outputs.
        self._conform_outputs = BytesConformer(self._config.outputs, "output")

    @property
    def config(self) -> ModelConfig:
        """The model's name, platform and specs, as the server describes them."""
        return self._config

    @property
    def path(self) -> str:
        """The model's URL, as given."""
        return self._url.url

    @abstractmethod
    def _connect(self) -> None:
        """Open the connection (the options are in ``self._settings``)."""

    @abstractmethod
    def model_metadata(self) -> dict[str, Any]:
        """The model's metadata in the protocol's JSON form."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection. Idempotent."""


def remote_options(url: str, visible_gpu: int | None, use_ope: bool) -> tuple[ModelURL, type[Options]]:
    """The parsed URL of a served model and the declaration of its options.

    Raises:
        PackageError: the URL is malformed.
        OptionError: ``visible_gpu`` or ``use_ope`` is set: the server chooses how it runs models.
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
    return target, _BACKENDS[target.protocol][2]


def open_remote(target: ModelURL, options: Mapping[str, Any]) -> RemoteBackend:
    """Connect to a served model with its protocol's backend.

    Raises:
        BackendUnavailable: the protocol's client library (httpx, grpcio) is not installed.
        PackageError: see ``RemoteBackend``.
    """
    module_name, class_name, _ = _BACKENDS[target.protocol]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"Remote models over {target.protocol} need a package that is not installed ({exc}); "
            f"install it with: pip install 'neuropod[remote]'"
        ) from exc
    backend: RemoteBackend = getattr(module, class_name)(target, **options)
    return backend


def load_remote(
    url: str,
    visible_gpu: int | None = None,
    *,
    use_ope: bool = False,
    **options: Any,
) -> NeuropodModel:
    """Open a model served by a server of the Open Inference Protocol (``neuropod serve``, Triton...).

    The same as ``load_neuropod(url, ...)``. The model's specs come from the server's metadata,
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

    The example needs a server at that address, so the test suite skips it:

    >>> with load_remote("http://127.0.0.1:8000/v2/models/adder") as model:  # doctest: +SKIP
    ...     model.infer({"x": np.ones(3, np.float32), "y": np.ones(3, np.float32)})
    {'out': array([2., 2., 2.], dtype=float32)}
    """
    from neuropod.loader import load_neuropod

    parse_model_url(url)  # a path is not a URL here, whatever load_neuropod would make of it
    return load_neuropod(url, visible_gpu, use_ope=use_ope, **options)
