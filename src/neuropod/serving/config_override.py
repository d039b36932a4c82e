"""What a model's serving options set in the Triton configuration that clients read.

A package's specs give the configuration's names, types and dims (``neuropod.serving.metadata``);
clients such as Triton's ``image_client.py`` also read fields that no spec holds. A model's
``"config"`` (in its ``neuropod-serve.json``, in ``ModelOptions(config=...)``, or as the
``config`` parameter of a repository load) sets them, in Triton's own ``ModelConfig`` JSON
form::

    {
        "max_batch_size": 8,                        the largest batch (0: the model does not
                                                    batch); dims then leave out dim 0
        "input": [{"name": "image",
                   "format": "FORMAT_NCHW",         FORMAT_NONE, FORMAT_NHWC or FORMAT_NCHW
                   "dims": [3, 224, 224]}],         fixes the spec's variable dims
        "output": [{"name": "probs",
                    "label_filename": "labels.txt"}], one label per line, for classification
        "sequence_batching": {...}                  a stateful model's controls and implicit
                                                    state (neuropod.serving.sequence_batching)
    }

Every key is optional; ``name`` (of the model, when given) must be the served name. Like
Triton, unknown fields are refused, so that a setting this server would ignore is never
silently dropped. ``label_filename`` is relative to the model's folder (the one holding
``neuropod-serve.json``), else to the working directory; clients see the file's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropod.errors import OptionError
from neuropod.spec.tensor_spec import TensorSpec

if TYPE_CHECKING:
    from neuropod.serving.sequence_batching import SequenceBatching

#: The values of an input's ``format``.
FORMATS = ("FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW")

_MODEL_KEYS = ("input", "max_batch_size", "name", "output", "sequence_batching")
_TENSOR_KEYS = {"input": ("dims", "format", "name"), "output": ("dims", "label_filename", "name")}


@dataclass(frozen=True)
class ConfigOverride:
    """The fields a model's ``config`` sets (see the module docstring).

    Args:
        name: the model name it was written for (``None``: any).
        max_batch_size: the largest batch (``None``: as the other options say).
        formats: input name -> ``format``.
        dims: tensor name -> dims (without the batch dim when the model batches).
        label_files: output name -> path of its label file.
        sequence_batching: the model is stateful (``None``: it is not).
    """

    name: str | None = None
    max_batch_size: int | None = None
    formats: Mapping[str, str] = field(default_factory=dict)
    dims: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    label_files: Mapping[str, Path] = field(default_factory=dict)
    sequence_batching: SequenceBatching | None = None

    def check(
        self, model: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], batched: bool
    ) -> None:
        """Check the override against the model it is applied to.

        Raises:
            OptionError: it names another model, a tensor the model lacks, or dims that
                contradict the spec.
        """
        if self.name is not None and self.name != model:
            raise OptionError(f"config: 'name' is '{self.name}', but the model is served as '{model}'")
        specs = {spec.name: spec for spec in (*inputs, *outputs)}
        input_names = [spec.name for spec in inputs]
        output_names = [spec.name for spec in outputs]
        for kind, names, given in (
            ("input", input_names, [*self.formats, *(n for n in self.dims if n not in output_names)]),
            ("output", output_names, list(self.label_files)),
        ):
            for name in given:
                if name not in names:
                    raise OptionError(
                        f"config: the model has no {kind} '{name}' ({kind}s: {', '.join(names) or 'none'})"
                    )
        for name, dims in self.dims.items():
            shape = list(specs[name].shape)
            if batched:
                shape = shape[1:]
            fixed = [dim if isinstance(dim, int) else -1 for dim in shape]
            if len(dims) != len(shape) or any(f not in (-1, d) for f, d in zip(fixed, dims, strict=True)):
                raise OptionError(
                    f"config: dims {list(dims)} of '{name}' contradict its spec's shape "
                    f"{list(specs[name].shape)}{' without the batch dim' if batched else ''}; "
                    f"dims may only fix the spec's variable dims"
                )

    def labels(self) -> dict[str, list[str]]:
        """Output name -> its labels, read from the label files.

        Raises:
            OptionError: a label file cannot be read as UTF-8 text.
        """
        from neuropod.protocol.classification import read_labels

        out = {}
        for name, path in self.label_files.items():
            try:
                out[name] = read_labels(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise OptionError(
                    f"config: label_filename of output '{name}' cannot be read: {exc}"
                ) from None
        return out


def parse_config(value: object, where: str, folder: Path | None = None) -> ConfigOverride:
    """Read a model's ``config``.

    Args:
        value: the parsed JSON value.
        where: where it came from, for messages (a file, ``"load parameter 'config'"``...).
        folder: the model's folder, which label files are relative to (``None``: the working
            directory); so are initial state files, in its ``initial_state`` folder.

    Returns:
        The override.

    Raises:
        OptionError: it is not an object, has unknown keys, or a value of the wrong type.
    """
    config = json_object(value, f"{where}: config")
    known_fields(config, _MODEL_KEYS, f"{where}: config")
    name = config.get("name")
    if name is not None and not isinstance(name, str):
        raise OptionError(f"{where}: config 'name' must be a string, got {name!r}")
    batch = config.get("max_batch_size")
    if batch is not None and (type(batch) is not int or batch < 0):
        raise OptionError(f"{where}: config 'max_batch_size' must be an integer >= 0, got {batch!r}")
    formats: dict[str, str] = {}
    dims: dict[str, tuple[int, ...]] = {}
    labels: dict[str, Path] = {}
    for kind in ("input", "output"):
        entries = config.get(kind, [])
        if not isinstance(entries, list):
            raise OptionError(f"{where}: config '{kind}' must be a list of objects, got {entries!r}")
        for entry in entries:
            entry = json_object(entry, f"{where}: config '{kind}' entry")
            tensor = entry.get("name")
            if not isinstance(tensor, str):
                raise OptionError(f"{where}: each config '{kind}' entry needs a 'name' string, got {entry!r}")
            context = f"{where}: config {kind} '{tensor}'"
            known_fields(entry, _TENSOR_KEYS[kind], context)
            if "dims" in entry:
                dims[tensor] = _dims(entry["dims"], context)
            if "format" in entry:
                form = entry["format"]
                if not isinstance(form, str) or form.upper() not in FORMATS:
                    raise OptionError(
                        f"{context}: 'format' must be one of {', '.join(FORMATS)}, got {form!r}"
                    )
                formats[tensor] = form.upper()
            if "label_filename" in entry:
                labels[tensor] = _label_file(entry["label_filename"], folder, context)
    sequences = None
    if "sequence_batching" in config:
        from neuropod.serving.sequence_batching import parse_sequence_batching

        sequences = parse_sequence_batching(config["sequence_batching"], f"{where}: config", folder)
    return ConfigOverride(name, batch, formats, dims, labels, sequences)


def json_object(value: object, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object; else an ``OptionError`` saying what it should be."""
    if not isinstance(value, dict):
        raise OptionError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def known_fields(entry: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """Refuse fields of ``entry`` that are not among ``keys``, naming them and the accepted ones."""
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise OptionError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; this server sets: {', '.join(keys)}"
        )


def _dims(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or any(type(dim) is not int or dim < -1 for dim in value):
        raise OptionError(f"{where}: 'dims' must be a list of integers >= -1, got {value!r}")
    return tuple(value)


def _label_file(value: object, folder: Path | None, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise OptionError(f"{where}: 'label_filename' must be a file name, got {value!r}")
    if folder is None:
        return Path(value).resolve()
    path = (folder / value).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise OptionError(f"{where}: 'label_filename' {value!r} is outside the model's folder {folder}")
    return path


__all__ = ["FORMATS", "ConfigOverride", "parse_config"]
