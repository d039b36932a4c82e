"""What the HTTP and gRPC front ends share: models, shared memory, limits, auth, readiness."""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from neuropod.protocol.infer import VERSION
from neuropod.serving.errors import BadRequest, NotFound, Unauthenticated
from neuropod.serving.load_parameters import LoadParameters
from neuropod.serving.repository import ModelRepository
from neuropod.serving.shm import SharedMemoryRegistry

#: The protocol extensions the server implements, as ``GET /v2`` lists them.
EXTENSIONS = (
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "sequence",
    "statistics",
    "system_shared_memory",
)

#: Default largest request body, in bytes: what gRPC clients may send.
DEFAULT_MAX_BODY_SIZE = 2**31 - 1

T = TypeVar("T")

_INTEGER = re.compile(r"-?[0-9]+")


@dataclass
class ServerCore:
    """The state both front ends serve from.

    Args:
        repository: the models.
        auth_token: the bearer token every request but health checks must carry (``None``:
            no authentication).
        max_body_size: the largest request accepted, in bytes.
        name: the server's name in its metadata.
    """

    repository: ModelRepository
    auth_token: str | None = None
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    name: str = "neuropod"
    shm: SharedMemoryRegistry = field(default_factory=SharedMemoryRegistry)
    #: False once the server starts stopping: readiness turns false while requests drain.
    accepting: bool = True

    def metadata(self) -> dict[str, Any]:
        """The server metadata: ``{"name", "version", "extensions"}``."""
        from neuropod import __version__

        return {"name": self.name, "version": __version__, "extensions": list(EXTENSIONS)}

    def check_token(self, authorization: str | None) -> None:
        """Check an ``Authorization`` value against the server's token.

        Raises:
            Unauthenticated: a token is required and this is not ``Bearer <token>``.
        """
        token = self.auth_token
        if token is None:
            return
        if authorization is None:
            raise Unauthenticated("This server requires an 'Authorization: Bearer <token>' header")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthenticated("The bearer token is wrong")

    def check_version(self, model: str, version: str) -> None:
        """Check that a requested model version exists (every model has version ``"1"``).

        The messages are Triton's, which its clients and tests match.

        Raises:
            BadRequest: the version is not an integer, or is negative.
            NotFound: no such version.
        """
        if not version or version == VERSION:
            return
        if _INTEGER.fullmatch(version) is None:
            raise BadRequest(
                f"failed to get model version from specified version string '{version}' "
                f"(details: not an integer), version should be an integral value > 0"
            )
        if version.startswith("-"):
            raise BadRequest(
                f"invalid model version specified '{version}' , version should be an integral value > 0"
            )
        raise NotFound(f"Request for unknown model: '{model}' version {version} is not found")

    def statistics(self, name: str | None) -> list[dict[str, Any]]:
        """The statistics of model ``name``, or of every ready model.

        Raises:
            NotFound: no model has that name.
            Unavailable: it is not loaded.
        """
        if name:
            return [self.repository.get(name).stats.to_dict()]
        return [served.stats.to_dict() for served in self.repository.served()]

    def load_blocking(self, name: str, parameters: LoadParameters | None = None) -> None:
        """Load (or reload) model ``name``, with a ``config`` override or uploaded files.

        Raises:
            BadRequest: malformed parameters, or the model failed to load.
            NotFound: no model has that name, and no files were given.
        """
        self.repository.load(name, parameters)

    async def load(self, name: str, parameters: LoadParameters | None = None) -> None:
        """``load_blocking`` without blocking the event loop."""
        await _in_thread(self.load_blocking, name, parameters)

    async def unload(self, name: str) -> None:
        """Unload model ``name`` once its queued requests are done, without blocking the loop.

        Raises:
            NotFound: no model has that name.
        """
        await _in_thread(self.repository.unload, name)

    async def index(self, ready_only: bool) -> list[dict[str, str]]:
        """The repository index (it rescans the repository folder)."""
        return await _in_thread(self.repository.index, ready_only)


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)
