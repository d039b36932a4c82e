"""The models a server knows: packages named on the command line and a repository folder.

Explicitly given packages are served under their model name. A repository folder's entries
(see ``neuropod.serving.options`` for its layout) are served under the entry's name and are
found again whenever the repository is indexed or a model is loaded, so packages copied into
the folder can be loaded without a restart.

A model is ``READY`` (loaded), ``UNAVAILABLE`` (not loaded, or its load failed: ``reason``
says why), or ``LOADING`` / ``UNLOADING`` while that happens.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuropod.errors import NeuropodError
from neuropod.loader import load_neuropod
from neuropod.model import NeuropodModel
from neuropod.package.archive import is_zip
from neuropod.package.config import ModelConfig
from neuropod.package.zipped import read_zipped
from neuropod.protocol.infer import VERSION
from neuropod.serving.config_override import parse_config
from neuropod.serving.errors import BadRequest, NotFound, ServingError, Unavailable
from neuropod.serving.load_parameters import LoadParameters, write_files
from neuropod.serving.options import OPTIONS_FILE, ModelOptions, is_package, read_model_folder
from neuropod.serving.served_model import Servable, ServedModel

logger = logging.getLogger("neuropod.serving")

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"
UNLOADING = "UNLOADING"


@dataclass
class _Entry:
    name: str
    path: Path
    options: ModelOptions
    in_repository: bool
    state: str = UNAVAILABLE
    reason: str = ""
    served: ServedModel | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The folder of files uploaded with the last load that had any (removed with the entry).
    upload: Path | None = None


def unknown_model(name: str) -> str:
    """Triton's message for a model that no repository has (its clients and tests match it)."""
    return f"Request for unknown model: '{name}' is not found"


class ModelRepository:
    """Every model a server can serve, loaded or not. Thread-safe.

    Args:
        paths: packages to serve under their model names.
        repository: a folder of models to serve under their entry names.
        load_options: default ``load_neuropod`` options of every model (a model folder's
            ``neuropod-serve.json`` overrides them).
        model_options: options of models by served name, over everything else.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]] = (),
        repository: str | os.PathLike[str] | None = None,
        *,
        load_options: Mapping[str, Any] | None = None,
        model_options: Mapping[str, ModelOptions] | None = None,
    ):
        self.folder = None if repository is None else Path(repository)
        self._defaults = dict(load_options or {})
        self._overrides = dict(model_options or {})
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._explicit = [Path(p) for p in paths]
        if self.folder is not None and not self.folder.is_dir():
            raise NotADirectoryError(f"Model repository {self.folder} is not a directory")

    def load_all(self) -> None:
        """Load the explicit packages (failing on any error), then every repository model.

        A repository model that fails to load stays ``UNAVAILABLE`` with the reason, and the
        others are served.

        Raises:
            NeuropodError: an explicit package failed to load.
            ValueError: two explicit packages have the same model name.
        """
        for path in self._explicit:
            defaults = ModelOptions().merged(self._defaults)
            # The model's own options (use_ope, instances...) apply to its load, so its name is
            # read from its config first; an unreadable one fails in the load, which says why.
            named = _package_name(path)
            options = defaults if named is None else self._options_of(named, defaults)
            model = _batched(load_neuropod(path, **options.load_options), options)
            name = model.name
            if name in self._entries:
                model.close()
                raise ValueError(f"Two packages are named '{name}': {self._entries[name].path} and {path}")
            options = self._options_of(name, defaults)
            entry = _Entry(name, path, options, in_repository=False)
            try:
                entry.served, entry.state = ServedModel(name, model, options), READY
            except BaseException:  # its config does not fit it
                model.close()
                raise
            self._entries[name] = entry
        self.scan()
        for entry in list(self._entries.values()):
            if entry.in_repository and entry.state == UNAVAILABLE and not entry.reason:
                try:
                    self.load(entry.name)
                except ServingError as exc:
                    logger.error("Model '%s' failed to load: %s", entry.name, exc)

    def scan(self) -> None:
        """Find the repository folder's models (new ones start ``UNAVAILABLE``)."""
        if self.folder is None:
            return
        found: dict[str, Path] = {}
        for child in sorted(self.folder.iterdir()):
            if (child / OPTIONS_FILE).is_file():
                found[child.name] = child
            elif is_package(child):
                found[child.stem if child.suffix == ".zip" else child.name] = child
        with self._lock:
            for name, path in found.items():
                entry = self._entries.get(name)
                if entry is None:
                    self._entries[name] = _Entry(name, path, ModelOptions(), in_repository=True)
                elif entry.in_repository:
                    entry.path = path

    def get(self, name: str) -> ServedModel:
        """The ready model ``name``.

        Raises:
            NotFound: no model has that name.
            Unavailable: it is not loaded.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(unknown_model(name))
        served = entry.served
        if served is None or entry.state != READY:
            why = f": {entry.reason}" if entry.reason else ""
            raise Unavailable(f"Model '{name}' is not ready ({entry.state}){why}")
        return served

    def is_ready(self, name: str) -> bool:
        """Whether model ``name`` is loaded and ready.

        Raises:
            NotFound: no model has that name.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(unknown_model(name))
        return entry.state == READY

    def ready_states(self) -> dict[str, bool]:
        """Every model's name -> whether it is ready."""
        return {name: entry.state == READY for name, entry in self._entries.items()}

    def served(self) -> list[ServedModel]:
        """The ready models."""
        return [e.served for e in list(self._entries.values()) if e.served is not None and e.state == READY]

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """The repository index: ``[{"name", "version", "state", "reason"}]``, sorted by name."""
        self.scan()
        out = []
        for name, entry in sorted(self._entries.items()):
            if ready_only and entry.state != READY:
                continue
            item = {"name": name, "state": entry.state, "reason": entry.reason}
            if entry.state == READY:
                item["version"] = VERSION
            out.append(item)
        return out

    def load(self, name: str, parameters: LoadParameters | None = None) -> None:
        """Load model ``name``, or reload it if it is loaded (the old one drains first).

        Args:
            name: the model.
            parameters: a ``config`` to apply to this load, and uploaded files to load it
                from (see ``neuropod.serving.load_parameters``); files may create a model
                that the repository lacks.

        Raises:
            NotFound: no model has that name, and no files were given.
            BadRequest: files name a new model with an empty name or one holding a path
                separator; its ``neuropod-serve.json`` or ``config`` is invalid, an uploaded file
                cannot be written, or it fails to load (the entry keeps the reason).
        """
        parameters = parameters if parameters is not None else LoadParameters()
        self.scan()
        with self._lock:
            entry = self._entries.get(name)
            if entry is None and parameters.files:
                _check_new_name(name)
                entry = self._entries[name] = _Entry(name, Path(), ModelOptions(), in_repository=False)
        if entry is None:
            raise NotFound(
                f"failed to load '{name}', failed to poll from model repository: it has no model '{name}' "
                f"(models: {', '.join(sorted(self._entries)) or 'none'})"
            )
        with entry.lock:
            # A reload keeps serving the loaded model until the new one is ready, as Triton
            # does: a failed reload leaves it serving, with the failure as the answer.
            old = entry.served
            if old is None:
                entry.state, entry.reason = LOADING, ""
            model = None
            upload = None
            try:
                if parameters.files:
                    upload = write_files(parameters.files)
                folder = upload if upload is not None else entry.upload
                path, options = entry.path, entry.options
                if folder is not None:
                    path, options = read_model_folder(folder)
                    options = options.merged(self._defaults)
                elif entry.in_repository:
                    if (path / OPTIONS_FILE).is_file():
                        folder = path
                        path, options = read_model_folder(path)
                    options = options.merged(self._defaults)
                options = base = self._options_of(name, options)
                if parameters.config is not None:
                    override = parse_config(parameters.config, "load parameter 'config'", folder)
                    options = options.with_config(override)
                model = _batched(load_neuropod(path, **options.load_options), options)
                served = ServedModel(name, model, options)
            except (NeuropodError, OSError) as exc:
                if model is not None:
                    model.close()
                if upload is not None:
                    shutil.rmtree(upload, ignore_errors=True)
                if old is None:
                    entry.state, entry.reason = UNAVAILABLE, f"load failed: {exc}"
                else:
                    logger.error("Model '%s' failed to reload, the loaded one stays: %s", name, exc)
                raise BadRequest(
                    f"load failed for model '{name}': version {VERSION} is at UNAVAILABLE state: {exc};"
                ) from exc
            if folder is None:
                entry.options = base
            entry.served, entry.state, entry.reason = served, READY, ""
            if old is not None:
                old.close()  # after the swap: new requests already reach the new model
            if upload is not None:
                if entry.upload is not None:
                    shutil.rmtree(entry.upload, ignore_errors=True)
                entry.upload = upload

    def unload(self, name: str, timeout: float | None = None) -> bool:
        """Unload model ``name`` once its running requests are done.

        Args:
            name: the model.
            timeout: the longest to wait for them (``None``: for ever).

        Returns:
            Whether it was closed (``False``: a call outlived ``timeout``; the model is left
            open, no longer served).

        Raises:
            NotFound: no model has that name.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"Unknown model '{name}'")
        with entry.lock:
            served, entry.served = entry.served, None
            entry.state, entry.reason = UNLOADING, ""
            closed = served is None or served.close(timeout)
            entry.state, entry.reason = UNAVAILABLE, "unloaded"
        return closed

    def _options_of(self, name: str, found: ModelOptions) -> ModelOptions:
        override = self._overrides.get(name)
        return found if override is None else override.merged(found.load_options)

    def close(self, timeout: float | None = None) -> list[str]:
        """Unload every model and remove uploaded files. Idempotent.

        Args:
            timeout: the longest to wait for running requests, for all models together
                (``None``: for ever).

        Returns:
            The models left open because a call outlived ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        left = []
        for name in list(self._entries):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.unload(name, remaining):
                left.append(name)
            entry = self._entries[name]
            if entry.upload is not None:
                shutil.rmtree(entry.upload, ignore_errors=True)
                entry.upload = None
        return left


def _check_new_name(name: str) -> None:
    # Triton's texts; a name that a URL path cannot carry could never be called either.
    if not name:
        raise BadRequest("Model name cannot be empty. Please enter a valid name to deploy.")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise BadRequest(
            f"invalid model name '{name}', model name must not contain path traversal characters"
        )


def _package_name(path: Path) -> str | None:
    """The model name in a package's config, read without loading it; ``None`` if unreadable."""
    try:
        if is_zip(path):
            zipped = read_zipped(path)
            return None if zipped is None else zipped.config.name
        return ModelConfig.read(path).name
    except (NeuropodError, OSError):
        return None


def _batched(model: NeuropodModel, options: ModelOptions) -> Servable:
    if options.dynamic_batching is None:
        return model
    from neuropod.dynamic_batching import DynamicBatcher

    try:
        return DynamicBatcher(
            model,
            max_batch_size=options.max_batch_size,
            max_queue_delay_ms=options.dynamic_batching.get("max_queue_delay_ms", 0.0),
            concurrency=options.instances,
        )
    except BaseException:
        model.close()
        raise
