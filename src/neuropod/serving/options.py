"""How models are served: each model's load options, read from the repository or given in
code, and the server's HTTP connection limits (``HttpLimits``).

A model of a repository folder is either a package (a package directory or ``.zip``), served
with the server's default options, or a folder of its own holding a package and a
``neuropod-serve.json`` file::

    repository/
        adder.zip                      served as "adder" (the file's stem)
        classifier/                    served as "classifier" (the folder's name)
            neuropod-serve.json
            model.zip                  the package (or "package" in the file names it)

``neuropod-serve.json`` holds one JSON object; every key is optional::

    {
        "package": "model.zip",        the package, relative to the folder (default: the one
                                       package directory or .zip in it)
        "options": {                   keyword arguments of load_neuropod, e.g.
            "use_ope": true,           run the model in worker processes of its own,
            "instances": 2,            this many of them,
            "timeout": 10.0,           kill a call that takes longer,
            "sandbox": true            and run them sandboxed (docs/sandbox.md)
        },
        "concurrency": 2,              calls run at once (default: max_batch_size with dynamic
                                       batching, else "instances", else 1)
        "max_batch_size": 8,           the largest batch (0: the model does not batch); the
                                       Triton configuration's dims then leave out dim 0
        "dynamic_batching": {          merge concurrent requests into one call, up to
            "max_queue_delay_ms": 2    max_batch_size rows, waiting at most this long
        },                             (neuropod.batching.DynamicBatcher; every input and
                                       output must start with one batch symbol)
        "sequence_batching": {...}     a stateful model: the control inputs the server fills
                                       in and the state it keeps per sequence (Triton's fields,
                                       see neuropod.serving.sequence_batching); here or in
                                       "config", not both
        "max_sequences": 1000,         with sequence_batching: the most sequences active at once
        "config": {...}                Triton configuration fields that clients read: input
    }                                  formats, dims, label files (neuropod.serving.config_override)

The file is checked by hand rather than by a schema library (msgspec, pydantic): its values are
checked by ``ModelOptions`` itself, which servers also build in code (``Server(model_options=...)``)
where no file is decoded, so a schema would be a second validator of the same fields with a second
message format. What is left to the reader is the file's shape (an object, known keys, a package
path), a few lines that name the file and the key. msgspec (a new dependency) and pydantic (not a
dependency today, and over 100 ms to import) would not be lighter.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from neuropod.errors import OptionError
from neuropod.options import Options, int_at_least, number_above, option
from neuropod.package import layout
from neuropod.serving.config_override import ConfigOverride, parse_config
from neuropod.serving.sequence_batching import SequenceBatching, parse_sequence_batching

#: The name of a model folder's serve options file.
OPTIONS_FILE = "neuropod-serve.json"

_KEYS = {
    "package",
    "options",
    "concurrency",
    "max_batch_size",
    "dynamic_batching",
    "sequence_batching",
    "max_sequences",
    "config",
}

#: The default of ``max_sequences``: the most sequences a stateful model keeps at once.
DEFAULT_MAX_SEQUENCES = 1000


@dataclass(frozen=True)
class ModelOptions:
    """The options of one served model.

    Args:
        load_options: keyword arguments for ``load_neuropod`` (``use_ope``, ``instances``...).
        concurrency: how many calls may run the model at once; ``None``: its ``instances``
            option, else 1.
        max_batch_size: the ``max_batch_size`` of the Triton model configuration (0: the
            model does not batch, as far as clients are told).
        dynamic_batching: ``{"max_queue_delay_ms": ...}`` to merge concurrent requests into
            batches of up to ``max_batch_size`` rows; ``None``: no merging.
        config: Triton configuration fields clients read (input formats, dims, label files,
            ``max_batch_size``), as a ``ConfigOverride`` or its JSON form (see
            ``neuropod.serving.config_override``); its ``max_batch_size`` is this one's.
        sequence_batching: the model is stateful: a ``SequenceBatching`` or its JSON form (see
            ``neuropod.serving.sequence_batching``); or give it in ``config``, not both.
        max_sequences: the most sequences a stateful model keeps at once; a request that would
            start one more is refused (503) until one ends or idles out.

    Raises:
        OptionError: a value has the wrong type or range, or ``config`` is malformed.
    """

    load_options: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int | None = None
    max_batch_size: int = 0
    dynamic_batching: Mapping[str, Any] | None = None
    config: ConfigOverride | Mapping[str, Any] | None = None
    sequence_batching: SequenceBatching | Mapping[str, Any] | None = None
    max_sequences: int = DEFAULT_MAX_SEQUENCES

    def __post_init__(self) -> None:
        config = self.config
        if config is not None and not isinstance(config, ConfigOverride):
            config = parse_config(config, "ModelOptions")
            object.__setattr__(self, "config", config)
        sequences = self.sequence_batching
        if sequences is not None and not isinstance(sequences, SequenceBatching):
            object.__setattr__(self, "sequence_batching", parse_sequence_batching(sequences, "ModelOptions"))
        int_at_least(1)("max_sequences", self.max_sequences)
        if config is not None and config.max_batch_size is not None:
            if self.max_batch_size not in (0, config.max_batch_size):
                raise OptionError(
                    f"max_batch_size is {self.max_batch_size} but config's max_batch_size is "
                    f"{config.max_batch_size}; give it once"
                )
            object.__setattr__(self, "max_batch_size", config.max_batch_size)
        for name in ("concurrency", "max_batch_size"):
            value = getattr(self, name)
            if value is None and name == "concurrency":
                continue
            int_at_least(int(name == "concurrency"))(name, value)
        object.__setattr__(self, "load_options", dict(self.load_options))
        if self.dynamic_batching is not None:
            if not isinstance(self.dynamic_batching, Mapping) or set(self.dynamic_batching) - {
                "max_queue_delay_ms"
            }:
                raise OptionError(
                    "dynamic_batching must be an object with at most 'max_queue_delay_ms', "
                    f"got {self.dynamic_batching!r}"
                )
            if self.max_batch_size < 1:
                raise OptionError("dynamic_batching needs max_batch_size >= 1")
        if config is not None and config.sequence_batching is not None and self.sequence_batching is not None:
            raise OptionError("sequence_batching is given both on its own and in config; give it once")
        if self.dynamic_batching is not None and self.sequences is not None:
            raise OptionError(
                "dynamic_batching and sequence_batching exclude each other (as in Triton, a model "
                "has one scheduler); give one"
            )

    @property
    def sequences(self) -> SequenceBatching | None:
        """The model's ``sequence_batching``, given on its own or in ``config`` (``None``: stateless)."""
        if isinstance(self.sequence_batching, SequenceBatching):
            return self.sequence_batching
        if isinstance(self.config, ConfigOverride):
            return self.config.sequence_batching
        return None

    @property
    def threads(self) -> int:
        """How many calls may run at once."""
        if self.concurrency is not None:
            return self.concurrency
        if self.dynamic_batching is not None:
            return self.max_batch_size  # enough callers waiting in the batcher to fill a batch
        return self.instances

    @property
    def instances(self) -> int:
        """How many instances run the model (its ``instances`` load option, else 1)."""
        instances = self.load_options.get("instances")
        return instances if isinstance(instances, int) and instances > 0 else 1

    def merged(self, defaults: Mapping[str, Any]) -> ModelOptions:
        """These options over the server's default load options."""
        return ModelOptions(
            {**defaults, **self.load_options},
            self.concurrency,
            self.max_batch_size,
            self.dynamic_batching,
            self.config,
            self.sequence_batching,
            self.max_sequences,
        )

    def with_config(self, config: ConfigOverride) -> ModelOptions:
        """These options with ``config`` in place of their own (a repository load's ``config``)."""
        batch = self.max_batch_size if config.max_batch_size is None else 0
        sequences = self.sequence_batching if config.sequence_batching is None else None
        return ModelOptions(
            self.load_options,
            self.concurrency,
            batch,
            self.dynamic_batching,
            config,
            sequences,
            self.max_sequences,
        )


@dataclass(frozen=True)
class HttpLimits(Options):
    """How long, and how many, HTTP connections may hold the server (see docs/serving/limits.md).

    A client that connects and sends nothing, trickles its headers, or trickles its body holds
    a connection and a file descriptor; these limits bound both, so that such clients cannot
    shut out the others (``neuropod.serving.http_guard`` enforces them).

    Args:
        max_connections: HTTP connections open at once. A connection past it first closes the
            oldest connection still waiting for its request's headers, else the oldest idle
            keep-alive one; when every connection is busy with a request, the new one is
            answered 503 and closed. Lowered at start to leave file descriptors for gRPC and
            the models where the process may open fewer.
        header_timeout: seconds a connection has, from its opening (or from the first byte of
            the next request on a kept-alive one), to deliver a request's complete headers;
            then it is answered 408 and closed.
        body_timeout: seconds a request's body has, from its headers, before it must keep up
            ``body_min_rate``: each byte received extends the body's deadline by
            ``1 / body_min_rate`` seconds. A body past its deadline is answered 408 (or, if an
            answer went out already, its connection is closed).
        body_min_rate: bytes per second a body must arrive at, on average, past
            ``body_timeout``.
        keep_alive_timeout: seconds an idle connection is kept open after an answer.

    Raises:
        OptionError: a value has the wrong type or range.
    """

    where: ClassVar[str] = "the HTTP limits"

    max_connections: int = option(10_000, int_at_least(1))
    header_timeout: float = option(10.0, number_above(0, "seconds"))
    body_timeout: float = option(30.0, number_above(0, "seconds"))
    body_min_rate: float = option(65_536.0, number_above(0, "bytes per second"))
    keep_alive_timeout: float = option(30.0, number_above(0, "seconds"))


def is_package(path: Path) -> bool:
    """Whether ``path`` is a package: a directory with a config, or a zip file."""
    if path.is_dir():
        return (path / layout.CONFIG).is_file()
    return path.is_file() and zipfile.is_zipfile(path)


def read_model_folder(folder: Path) -> tuple[Path, ModelOptions]:
    """The package and options of a model folder that holds a ``neuropod-serve.json``.

    Args:
        folder: the model's folder.

    Returns:
        ``(package_path, options)``.

    Raises:
        OptionError: the file is not valid JSON, has unknown keys or wrong values, or the
            package cannot be found.
    """
    file = folder / OPTIONS_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except RecursionError:
        raise OptionError(f"{file}: cannot be read as JSON: it nests too deeply") from None
    except (OSError, ValueError) as exc:
        raise OptionError(f"{file}: cannot be read as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise OptionError(f"{file}: must hold a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise OptionError(
            f"{file}: unknown key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(sorted(_KEYS))}"
        )
    load_options = data.get("options", {})
    if not isinstance(load_options, dict):
        raise OptionError(f"{file}: 'options' must be a JSON object of load_neuropod options")
    try:
        config = data.get("config")
        sequences = data.get("sequence_batching")
        options = ModelOptions(
            load_options,
            data.get("concurrency"),
            data.get("max_batch_size", 0),
            data.get("dynamic_batching"),
            None if config is None else parse_config(config, str(file), folder),
            None if sequences is None else parse_sequence_batching(sequences, str(file), folder),
            data.get("max_sequences", DEFAULT_MAX_SEQUENCES),
        )
    except OptionError as exc:
        if str(exc).startswith(str(file)):
            raise
        raise OptionError(f"{file}: {exc}") from None
    return _find_package(folder, data.get("package"), file), options


def _find_package(folder: Path, named: object, file: Path) -> Path:
    if named is not None:
        if not isinstance(named, str):
            raise OptionError(f"{file}: 'package' must be a path relative to the folder, got {named!r}")
        path = (folder / named).resolve()
        if not path.is_relative_to(folder.resolve()) or not is_package(path):
            raise OptionError(f"{file}: 'package' {named!r} is not a package inside {folder}")
        return path
    found = sorted(child for child in folder.iterdir() if is_package(child))
    if len(found) != 1:
        what = "no package" if not found else f"{len(found)} packages"
        raise OptionError(
            f"{folder}: holds {what}; put exactly one package beside {OPTIONS_FILE}, or name it "
            f"with 'package'"
        )
    return found[0]
