"""Packaging Python code and data (platform ``python``), and PyTorch eager models with it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropod.environments.lock import lock_requirements
from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.code import IGNORE, check_code_path_spec, copy_code
from neuropod.packagers.common import CommonArgs, create_package

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11


def create_python_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    input_spec: Iterable[Any],
    output_spec: Iterable[Any],
    data_paths: Sequence[Mapping[str, str]] = (),
    code_path_spec: Sequence[Mapping[str, Any]] = (),
    entrypoint_package: str,
    entrypoint: str,
    requirements: str | None = None,
    decoupled: bool = False,
    **common: Unpack[CommonArgs],
) -> None:
    """Package Python code as a model.

    At load, ``entrypoint_package.entrypoint(data_dir)`` is called with the directory holding
    the packaged data and returns a callable; ``infer`` calls it with the inputs as keyword
    arguments (numpy arrays) and it returns a dict of numpy arrays. The code is imported in a
    namespace of its own, so two models whose code has the same package names load side by side.

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        input_spec: the input specs.
        output_spec: the output specs.
        data_paths: ``[{"path": file, "packaged_name": name}]``, copied to ``0/data/name``.
        code_path_spec: ``[{"python_root": dir, "dirs_to_package": [relative dirs]}]``, copied
            to ``0/code`` keeping the relative paths (``*.pyc`` and ``__pycache__`` are skipped).
        entrypoint_package: the module holding the entrypoint, e.g. ``"my_model.main"``.
        entrypoint: the entrypoint function's name.
        requirements: pip requirements of the code (pip's format; option lines such as
            ``--find-links DIR`` or ``--no-index`` are kept), stored as ``0/requirements.in`` and
            locked with uv into ``0/requirements.lock``, preferring the versions installed here.
            At load, a model whose locked versions are not installed runs in an environment of
            its own (see ``neuropod.environments``).
        decoupled: the callable answers each call with an iterable (a generator, typically) of
            output dicts, zero or more of them, rather than with one dict. The model is then
            run with ``infer_stream``, and a server reports it as Triton's decoupled models
            (``model_transaction_policy { decoupled: true }``) and streams its responses over
            gRPC ``ModelStreamInfer`` (see ``docs/serving/streaming.md``).
        **common: the arguments every packager takes (see docs/packaging.md).

    Raises:
        RequirementsError: the requirements cannot be locked (the message quotes the resolver).
        BackendUnavailable: requirements are given and uv is not installed.
        PackageError: a data file or code directory is missing, a ``packaged_name`` is not a
            relative path or is used twice, the package would land inside a ``python_root``,
            or the entrypoint is not a Python name. Nothing is written then.
        OptionError: an unknown keyword argument.
        TestDataMismatch: the self-test's outputs differ from ``test_expected_out``.
    """
    if not isinstance(entrypoint_package, str) or not all(
        p.isidentifier() for p in entrypoint_package.split(".")
    ):
        raise PackageError(
            f"create_python_neuropod(): entrypoint_package must be a module name such as "
            f"'my_model.main', got {entrypoint_package!r}"
        )
    if not isinstance(entrypoint, str) or not entrypoint.isidentifier():
        raise PackageError(
            f"create_python_neuropod(): entrypoint must be a function name, got {entrypoint!r}"
        )
    if requirements is not None and not isinstance(requirements, str):
        raise PackageError(
            f"create_python_neuropod(): requirements must be a string in pip's format, got {requirements!r}"
        )
    # Checked before anything is written, so that a bad call leaves nothing behind.
    data = _check_data_paths(data_paths)
    code = check_code_path_spec(code_path_spec, Path(neuropod_path))

    def write_model(builder: PackageBuilder) -> None:
        _copy_data(builder.root / layout.DATA_DIR, data)
        copy_code(builder.root / layout.CODE_DIR, code)
        if requirements is not None:
            (builder.root / layout.REQUIREMENTS_IN).write_text(requirements, encoding="utf-8")
            lock = lock_requirements(requirements)
            (builder.root / layout.REQUIREMENTS_LOCK).write_text(lock, encoding="utf-8")
        builder.write_backend_config({"entrypoint": entrypoint, "entrypoint_package": entrypoint_package})

    create_package(
        "create_python_neuropod", "python", neuropod_path, model_name,
        input_spec, output_spec, write_model, common, decoupled=decoupled,
    )  # fmt: skip


#: PyTorch eager models are packaged as Python code, as in the original Neuropod.
create_pytorch_neuropod = create_python_neuropod


def _check_data_paths(data_paths: Sequence[Mapping[str, str]]) -> list[tuple[Path, str]]:
    """``(source, packaged name)`` for every data file, after checking each."""
    if isinstance(data_paths, (str, bytes, Mapping)):
        raise PackageError(
            f"data_paths must be a list of {{'path', 'packaged_name'}} dicts, got {data_paths!r}"
        )
    checked: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for item in data_paths:
        if not isinstance(item, Mapping) or set(item) != {"path", "packaged_name"}:
            raise PackageError(f"Each data_paths item must be {{'path', 'packaged_name'}}, got {item!r}")
        src = Path(item["path"])
        name = item["packaged_name"]
        if not isinstance(name, str) or not name or name in (".", "/"):
            raise PackageError(f"packaged_name must be a non-empty relative path, got {name!r} (for {src})")
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts:
            raise PackageError(
                f"packaged_name {name!r} must be a relative path inside the package (for {src})"
            )
        normalized = "/".join(part for part in parts if part != ".")
        if normalized in seen:
            raise PackageError(f"packaged_name {name!r} is used by more than one data_paths item")
        seen.add(normalized)
        if not src.exists():
            raise PackageError(f"Data file {src} (packaged as {name!r}) does not exist")
        checked.append((src, normalized))
    return checked


def _copy_data(data_dir: Path, data: list[tuple[Path, str]]) -> None:
    for src, name in data:
        target = data_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=IGNORE)
        else:
            shutil.copyfile(src, target)
