"""The packaging steps every platform shares: config, custom ops, test data, self-test."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from neuropod.environments.versions import VersionRange
from neuropod.errors import OptionError, PackageError
from neuropod.package.builder import PackageBuilder
from neuropod.package.config import ModelConfig
from neuropod.package.test_data import save_test_data
from neuropod.utils.eval_utils import load_and_test_neuropod


class CommonArgs(TypedDict, total=False):
    """Keyword arguments every ``create_*_neuropod`` packager accepts (see docs/packaging.md)."""

    platform_version_semver: str
    input_tensor_device: Mapping[str, str] | None
    default_input_tensor_device: str
    custom_ops: Sequence[str]
    package_as_zip: bool
    zip_compression: int
    test_input_data: Mapping[str, Any] | None
    test_expected_out: Mapping[str, Any] | None
    persist_test_data: bool
    neuropod_load_args: Mapping[str, Any] | None


COMMON_ARGS = frozenset(CommonArgs.__annotations__)


def one_source(packager: str, sources: Mapping[str, tuple[Any, str]]) -> str:
    """The one of several alternative arguments that was given (the others being ``None``).

    Args:
        packager: the public packager's name, for messages.
        sources: ``{argument name: (value, what it is)}``, e.g.
            ``{"fn": (fn, "a function"), "exported": (exported, "a jax.export.Exported")}``.

    Returns:
        The name of the argument given.

    Raises:
        PackageError: none or several of them are given.
    """
    given = [name for name, (value, _) in sources.items() if value is not None]
    if len(given) != 1:
        choices = [f"{name}= ({what})" for name, (_, what) in sources.items()]
        raise PackageError(
            f"{packager}() needs exactly one of {', '.join(choices[:-1])} or {choices[-1]}; "
            f"got {' and '.join(given) if given else 'none'}"
        )
    return given[0]


def check_common_args(packager: str, common: Mapping[str, Any]) -> None:
    """Refuse keywords that are not ``CommonArgs`` (``create_package`` does it too).

    Raises:
        OptionError: ``common`` holds a keyword no packager takes; the message names it.
    """
    unknown = sorted(set(common) - COMMON_ARGS)
    if unknown:
        raise OptionError(f"{packager}() got unknown keyword argument(s) {', '.join(map(repr, unknown))}")


def create_package(
    packager: str,
    platform: str,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    input_spec: Iterable[Any],
    output_spec: Iterable[Any],
    write_model: Callable[[PackageBuilder], None],
    common: Mapping[str, Any],
    *,
    decoupled: bool = False,
) -> Path:
    """Write a package of ``platform``, then self-test it when test data is given.

    The arguments come in the order of the packagers' own, so that a packager hands them on
    in one line.

    Args:
        packager: the public packager's name, for messages.
        platform: the package's platform.
        neuropod_path, model_name, input_spec, output_spec: the packager's arguments.
        write_model: writes the platform's files (``0/data``, ``0/config.json``, ...).
        common: the packager's ``CommonArgs``.
        decoupled: the model answers a call with a stream of responses (python packages).

    Raises:
        OptionError: ``common`` holds a keyword no packager takes.
        SpecError, PackageError: a spec, argument or ``platform_version_semver`` is malformed;
            nothing is left behind.
        TestDataMismatch: the self-test's outputs differ; the package is removed.
    """
    check_common_args(packager, common)
    test_input = common.get("test_input_data")
    test_expected = common.get("test_expected_out")
    if test_expected is not None and test_input is None:
        raise PackageError(f"{packager}(): test_expected_out needs test_input_data")
    given_ops = common.get("custom_ops", ())
    if isinstance(given_ops, (str, bytes, os.PathLike)):
        # iterating a path would name one custom op per character
        raise PackageError(f"{packager}(): custom_ops must be a list of paths, got {given_ops!r}")
    custom_ops = [os.fspath(op) for op in given_ops]
    config = ModelConfig.build(
        name=model_name,
        platform=platform,
        input_spec=input_spec,
        output_spec=output_spec,
        platform_version_semver=common.get("platform_version_semver", "*"),
        custom_ops=[Path(op).name for op in custom_ops],
        input_tensor_device=common.get("input_tensor_device"),
        default_input_tensor_device=common.get("default_input_tensor_device", "GPU"),
        decoupled=decoupled,
    )
    VersionRange(config.platform_version_semver)  # an invalid range is a packaging error
    with PackageBuilder(
        neuropod_path,
        package_as_zip=common.get("package_as_zip", True),
        zip_compression=common.get("zip_compression", zipfile.ZIP_DEFLATED),
    ) as builder:
        builder.add_custom_ops(custom_ops)
        builder.write_config(config)
        write_model(builder)
        if test_input is not None and common.get("persist_test_data", True):
            save_test_data(builder.root, test_input, test_expected)
        path = builder.finish()
    if test_input is not None:
        try:
            load_and_test_neuropod(path, test_input, test_expected, common.get("neuropod_load_args"))
        except BaseException:
            # A package that fails its own test data is not one anybody should pick up.
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            raise
    return path
