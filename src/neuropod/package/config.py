"""The model config (``config.json``): what a package is and which problem it solves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from neuropod.errors import PackageError, SpecError, VersionRangeError
from neuropod.package import layout
from neuropod.package.jsonfile import dump_json, load_json
from neuropod.spec.tensor_spec import TensorSpec, parse_specs

DEVICES = ("GPU", "CPU")

_V = TypeVar("_V")


def per_input(
    argument: str, given: Mapping[str, _V] | None, inputs: Iterable[TensorSpec], error: type[Exception]
) -> dict[str, _V]:
    """``given``, a setting per input tensor, as a dict whose keys are all input names.

    Args:
        argument: the argument's name, for the message.
        given: ``{input name: value}``, or ``None`` for no entries.
        inputs: the input specs.
        error: the exception to raise (the caller's error for a bad argument).

    Raises:
        error: a key is not an input of the spec.
    """
    settings = dict(given or {})
    unknown = sorted(set(settings) - {spec.name for spec in inputs})
    if unknown:
        raise error(
            f"{argument} names tensor(s) {', '.join(map(repr, unknown))} that are not in the input spec"
        )
    return settings


@dataclass(frozen=True)
class ModelConfig:
    """The contents of a package's ``config.json``.

    Args:
        name: the model's name.
        platform: the backend that runs it (``torchscript``, ``python``, ...).
        inputs: the input specs.
        outputs: the output specs.
        platform_version_semver: the framework versions the model needs, as an npm-style range.
        custom_ops: file names of custom op libraries in ``0/ops``.
        input_tensor_device: for every input, ``"GPU"`` or ``"CPU"``.
        decoupled: the model answers each call with a stream of zero or more responses
            (``NeuropodModel.infer_stream``) rather than with exactly one; see
            ``docs/serving/streaming.md``. Written to ``config.json`` only when true, so that
            other packages keep the original's keys.
    """

    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform_version_semver: str = "*"
    custom_ops: tuple[str, ...] = ()
    input_tensor_device: Mapping[str, str] = field(default_factory=dict)
    decoupled: bool = False

    @classmethod
    def build(
        cls,
        *,
        name: str,
        platform: str,
        input_spec: Iterable[Any],
        output_spec: Iterable[Any],
        platform_version_semver: str = "*",
        custom_ops: Sequence[str] = (),
        input_tensor_device: Mapping[str, str] | None = None,
        default_input_tensor_device: str = "GPU",
        decoupled: bool = False,
    ) -> ModelConfig:
        """Validate packager arguments into a config, filling devices in as the original did.

        Raises:
            SpecError: a spec, the name, a device or the version range is malformed.
        """
        if not isinstance(name, str) or not name:
            raise SpecError(f"model_name must be a non-empty string, got {name!r}")
        if not isinstance(platform_version_semver, str) or not platform_version_semver.strip():
            raise VersionRangeError(
                f"platform_version_semver must be a version range such as '*' or '>= 2.0', "
                f"got {platform_version_semver!r}"
            )
        if not isinstance(decoupled, bool):
            raise SpecError(f"decoupled must be True or False, got {decoupled!r}")
        inputs = parse_specs(input_spec, "input")
        outputs = parse_specs(output_spec, "output")
        given = per_input("input_tensor_device", input_tensor_device, inputs, SpecError)
        devices = {spec.name: given.get(spec.name, default_input_tensor_device) for spec in inputs}
        config = cls(
            name=name,
            platform=platform,
            inputs=inputs,
            outputs=outputs,
            platform_version_semver=platform_version_semver,
            custom_ops=tuple(custom_ops),
            input_tensor_device=devices,
            decoupled=decoupled,
        )
        config._check_devices()
        return config

    def _check_devices(self) -> None:
        for tensor, device in self.input_tensor_device.items():
            if device not in DEVICES:
                raise SpecError(
                    f"The device of input '{tensor}' must be 'GPU' or 'CPU', got {device!r}"
                )
        missing = [spec.name for spec in self.inputs if spec.name not in self.input_tensor_device]
        if missing:
            raise SpecError(f"Input(s) {', '.join(map(repr, missing))} have no device")

    def to_json(self) -> dict[str, Any]:
        """The dict written to ``config.json``, key for key the original's (plus ``decoupled``
        for a decoupled model)."""
        written: dict[str, Any] = {
            "name": self.name,
            "platform": self.platform,
            "platform_version_semver": self.platform_version_semver,
            "input_spec": [spec.to_dict() for spec in self.inputs],
            "output_spec": [spec.to_dict() for spec in self.outputs],
            "custom_ops": list(self.custom_ops),
            "input_tensor_device": dict(self.input_tensor_device),
        }
        if self.decoupled:
            written["decoupled"] = True
        return written

    @classmethod
    def from_json(cls, obj: Any, source: str = layout.CONFIG) -> ModelConfig:
        """Parse a ``config.json`` dict, accepting what the original wrote.

        Raises:
            PackageError: a field is missing or malformed; the message names ``source``.
        """
        if not isinstance(obj, dict):
            raise PackageError(f"{source} must hold a JSON object, got {type(obj).__name__}")
        missing = [key for key in ("name", "platform", "input_spec", "output_spec") if key not in obj]
        if missing:
            raise PackageError(f"{source} lacks the field(s) {', '.join(missing)}")
        devices = obj.get("input_tensor_device")
        if devices is not None and not isinstance(devices, dict):
            raise PackageError(
                f"{source}: field 'input_tensor_device' must be an object of input name to "
                f"'GPU' or 'CPU', got {devices!r}"
            )
        decoupled = obj.get("decoupled", False)
        if not isinstance(decoupled, bool):
            raise PackageError(f"{source}: field 'decoupled' must be true or false, got {decoupled!r}")
        try:
            inputs = parse_specs(obj["input_spec"], "input")
            config = cls(
                name=_string_field(obj, "name", source),
                platform=_string_field(obj, "platform", source),
                inputs=inputs,
                outputs=parse_specs(obj["output_spec"], "output"),
                platform_version_semver=str(obj.get("platform_version_semver", "*")),
                custom_ops=tuple(_string_list(obj.get("custom_ops", []), "custom_ops", source)),
                # Configs written before devices existed put every input on the GPU.
                input_tensor_device=dict(devices or {spec.name: "GPU" for spec in inputs}),
                decoupled=decoupled,
            )
            config._check_devices()
        except SpecError as exc:
            raise PackageError(f"{source}: {exc}") from None
        return config

    def write(self, root: Path) -> None:
        """Write ``config.json`` into the package directory ``root``."""
        dump_json(self.to_json(), root / layout.CONFIG)

    @classmethod
    def read(cls, root: Path) -> ModelConfig:
        """Read ``config.json`` from the package directory ``root``."""
        path = root / layout.CONFIG
        return cls.from_json(load_json(path, "The model config"), source=str(path))


def _string_field(obj: Mapping[str, Any], key: str, source: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise PackageError(f"{source}: field '{key}' must be a string, got {value!r}")
    return value


def _string_list(value: Any, key: str, source: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PackageError(f"{source}: field '{key}' must be a list of strings, got {value!r}")
    return value
