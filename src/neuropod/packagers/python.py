"""Packaging Python code and data (platform ``python``), and PyTorch eager models with it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropod.errors import PackageError
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.common import create_package

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from neuropod.packagers.common import CommonArgs


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
        requirements: pip requirements of the code, stored as ``0/requirements.in``.
        **common: the arguments every packager takes (see the README).

    Raises:
        PackageError: a data file or code directory is missing, or the package would land
            inside a ``python_root``.
        OptionError: an unknown keyword argument.
    """
    for name, value in (("entrypoint_package", entrypoint_package), ("entrypoint", entrypoint)):
        if not isinstance(value, str) or not value:
            raise PackageError(f"create_python_neuropod(): {name} must be a non-empty string, got {value!r}")

    def write_model(builder: PackageBuilder) -> None:
        _copy_data(builder.root / layout.DATA_DIR, data_paths)
        _copy_code(builder.root / layout.CODE_DIR, code_path_spec, Path(neuropod_path))
        if requirements is not None:
            (builder.root / layout.REQUIREMENTS_IN).write_text(requirements, encoding="utf-8")
        builder.write_backend_config({"entrypoint": entrypoint, "entrypoint_package": entrypoint_package})

    create_package(
        "create_python_neuropod",
        platform="python",
        neuropod_path=neuropod_path,
        model_name=model_name,
        input_spec=input_spec,
        output_spec=output_spec,
        write_model=write_model,
        common=common,
    )


#: PyTorch eager models are packaged as Python code, as in the original Neuropod.
create_pytorch_neuropod = create_python_neuropod


def _copy_data(data_dir: Path, data_paths: Sequence[Mapping[str, str]]) -> None:
    for item in data_paths:
        if not isinstance(item, Mapping) or set(item) != {"path", "packaged_name"}:
            raise PackageError(f"Each data_paths item must be {{'path', 'packaged_name'}}, got {item!r}")
        src = Path(item["path"])
        name = item["packaged_name"]
        target = data_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise PackageError(f"packaged_name {name!r} must be a relative path inside the package")
        if not src.exists():
            raise PackageError(f"Data file {src} (packaged as {name!r}) does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=_IGNORE)
        else:
            shutil.copyfile(src, target)


_IGNORE = shutil.ignore_patterns("*.pyc", "__pycache__")


def _copy_code(code_dir: Path, code_path_spec: Sequence[Mapping[str, Any]], neuropod_path: Path) -> None:
    code_dir.mkdir(parents=True, exist_ok=True)
    for spec in code_path_spec:
        if not isinstance(spec, Mapping) or set(spec) != {"python_root", "dirs_to_package"}:
            raise PackageError(
                f"Each code_path_spec item must be {{'python_root', 'dirs_to_package'}}, got {spec!r}"
            )
        root = Path(spec["python_root"])
        if neuropod_path.resolve().is_relative_to(root.resolve()):
            raise PackageError(f"neuropod_path {neuropod_path} must not be inside python_root {root}")
        for rel in spec["dirs_to_package"]:
            src = root / rel
            if not src.is_dir():
                raise PackageError(f"Code directory {src} (from python_root {root}) does not exist")
            shutil.copytree(src, code_dir / rel, ignore=_IGNORE, dirs_exist_ok=True)
    # The original made every code directory a regular package; its packages rely on that.
    for dirpath, _dirnames, filenames in os.walk(code_dir):
        if dirpath != str(code_dir) and "__init__.py" not in filenames:
            Path(dirpath, "__init__.py").touch()
