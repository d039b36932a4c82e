"""The parameters of a repository load: a ``config`` override and uploaded ``file:`` contents.

As Triton's model repository extension has them (tritonclient's
``load_model(name, config=..., files=...)``):

- ``config``: JSON text of the model's configuration (see ``neuropod.serving.config_override``),
  applied to this load in place of the one its folder sets;
- ``file:<path>``: the contents of a file of the model's folder; the files given form a new
  folder that the model is loaded from (a package, and optionally a ``neuropod-serve.json``
  and label files), which is also how a model that is not in the repository is created. A
  leading version folder ``1/`` (Triton's layout) is dropped: packages have one version.

Over HTTP every value is a JSON string, ``file:`` contents base64; over gRPC ``config`` is a
``string_param`` and contents a ``bytes_param``. The files are written under the package
reader's limits (``NEUROPOD_MAX_PACKAGE_BYTES`` / ``NEUROPOD_MAX_PACKAGE_FILES``), besides the
server's body limit that the request itself passed.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from neuropod.package.limits import ExtractionLimits
from neuropod.serving.errors import BadRequest
from neuropod.serving.options import OPTIONS_FILE

CONFIG = "config"
FILE_PREFIX = "file:"

_VERSION = "1"


@dataclass(frozen=True)
class LoadParameters:
    """What a load request asks for beyond the model's name.

    Args:
        config: the parsed ``config`` JSON (``None``: the folder's own).
        files: relative path -> contents of uploaded files (empty: load from the repository).
    """

    config: Any = None
    files: Mapping[str, bytes] = field(default_factory=dict)


def from_json(parameters: object) -> LoadParameters:
    """The parameters of an HTTP load body's ``parameters`` object.

    Raises:
        BadRequest: it is not an object, a value is not a string, ``config`` is not JSON,
            contents are not base64, or a key is neither ``config`` nor ``file:<path>``.
    """
    if parameters is None:
        return LoadParameters()
    if not isinstance(parameters, dict):
        raise BadRequest(f"The load request's 'parameters' must be a JSON object, got {parameters!r}")
    config = None
    files = {}
    for key, value in parameters.items():
        if not isinstance(value, str):
            raise BadRequest(f"Load parameter '{key}' must be a JSON string, got {value!r}")
        if key == CONFIG:
            config = _config(value)
        elif key.startswith(FILE_PREFIX):
            try:
                files[key] = base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise BadRequest(f"Load parameter '{key}' must hold base64 file contents: {exc}") from None
        else:
            raise _unrecognized(key)
    return LoadParameters(config, files)


def from_grpc(parameters: Mapping[str, Any]) -> LoadParameters:
    """The parameters of a ``RepositoryModelLoadRequest`` (``ModelRepositoryParameter`` values).

    Raises:
        BadRequest: ``config`` is not a ``string_param`` of JSON, contents not a
            ``bytes_param``, or a key is neither ``config`` nor ``file:<path>`` (Triton's texts).
    """
    config = None
    files = {}
    for key, value in parameters.items():
        kind = value.WhichOneof("parameter_choice")
        if key == CONFIG:
            if kind != "string_param":
                raise BadRequest(f"invalid value type for load parameter '{key}', expected string_param.")
            config = _config(value.string_param)
        elif key.startswith(FILE_PREFIX):
            if kind != "bytes_param":
                raise BadRequest(f"invalid value type for load parameter '{key}', expected bytes_param.")
            files[key] = value.bytes_param
        else:
            raise _unrecognized(key)
    return LoadParameters(config, files)


def write_files(files: Mapping[str, bytes], limits: ExtractionLimits | None = None) -> Path:
    """Write uploaded files into a new model folder.

    Without a ``neuropod-serve.json`` among them, an empty one is added, so that the folder
    is read as any model folder is.

    Args:
        files: ``file:<path>`` -> contents.
        limits: the most files and bytes (default: the package reader's, from the environment).

    Returns:
        The folder (in the temporary directory; the caller removes it).

    Raises:
        BadRequest: a path is empty, absolute, leaves the folder, or names a version other
            than 1; or the files are over the limits.
    """
    limits = limits if limits is not None else ExtractionLimits.from_env()
    if len(files) > limits.max_files:
        raise BadRequest(f"{len(files)} files were uploaded, more than the limit of {limits.max_files}")
    total = sum(len(data) for data in files.values())
    if total > limits.max_bytes:
        raise BadRequest(f"The uploaded files hold {total} bytes, more than the limit of {limits.max_bytes}")
    relative = {_relative_path(key): data for key, data in files.items()}
    folder = Path(tempfile.mkdtemp(prefix="neuropod-upload-"))
    try:
        for path, data in relative.items():
            target = folder.joinpath(*path.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if not (folder / OPTIONS_FILE).exists():
            (folder / OPTIONS_FILE).write_text("{}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _relative_path(key: str) -> PurePosixPath:
    path = PurePosixPath(key[len(FILE_PREFIX) :])
    parts = path.parts
    if parts and parts[0].isdigit():
        if parts[0] != _VERSION:
            raise BadRequest(
                f"Invalid file parameter '{key}': models served by neuropod have version {_VERSION} only"
            )
        parts = parts[1:]
    if not parts or path.is_absolute() or any(part in ("..", ".") for part in parts) or "\\" in key:
        raise BadRequest(
            f"Invalid file parameter '{key}': expected 'file:<path relative to the model folder>'"
        )
    return PurePosixPath(*parts)


def _config(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadRequest(
            f"Load parameter '{CONFIG}' must be JSON text of a model configuration: {exc}"
        ) from None


def _unrecognized(key: str) -> BadRequest:
    return BadRequest(f"unrecognized load parameter '{key}'. (accepted: '{CONFIG}', '{FILE_PREFIX}<path>')")


__all__ = ["CONFIG", "FILE_PREFIX", "LoadParameters", "from_grpc", "from_json", "write_files"]
