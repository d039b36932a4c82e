"""The examples in the docstrings of ``src/neuropod`` run, and print what they say they print.

Each module with an example is one test, named after the module. Examples run in a fresh
directory that holds the packages and the dataset they name (``addition_model.zip``,
``adder.zip``, ``model.zip``, ``data/``), built once per session, with ``np`` in their
namespace. A module whose optional dependency is missing is skipped with that dependency's name;
so are the modules in ``SKIPPED``, whose examples need what a test run does not start.
"""

from __future__ import annotations

import doctest
import importlib
import io
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import neuropod
from neuropod.packagers import create_python_neuropod

SOURCE = Path(neuropod.__file__).parent

# The only modules whose examples are marked ``+SKIP``, and why: each needs something that a
# test run does not start. A new ``+SKIP`` needs an entry here (and its reason in the prose).
SKIPPED = {
    "neuropod.integrations.ray.serve": "need a Ray cluster",
    "neuropod.remote.backend": "need a running server",
}

ADDITION = """
    def get_model(data_dir):
        def addition(x, y):
            return {"out": x + y}

        return addition
"""


def _modules_with_examples() -> list[str]:
    """Dotted names of the modules whose source holds an example, found without importing them."""
    names = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name != "__main__.py" and ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(SOURCE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _modules_with_skipped_examples() -> set[str]:
    return {
        name
        for name in _modules_with_examples()
        if "doctest: +SKIP" in _source(name).read_text(encoding="utf-8")
    }


def _source(module_name: str) -> Path:
    path = SOURCE.parent.joinpath(*module_name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _params() -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.skip(reason=f"{name}'s examples {SKIPPED[name]}"))
        if name in SKIPPED
        else name
        for name in _modules_with_examples()
    ]


def _addition_package(path: Path, code_root: Path, dims: tuple[object, ...]) -> Path:
    spec = [{"name": name, "dtype": "float32", "shape": dims} for name in ("x", "y")]
    create_python_neuropod(
        neuropod_path=path,
        model_name=path.stem,
        input_spec=spec,
        output_spec=[{"name": "out", "dtype": "float32", "shape": dims}],
        code_path_spec=[{"python_root": str(code_root), "dirs_to_package": ["addition"]}],
        entrypoint_package="addition",
        entrypoint="get_model",
    )
    return path


@pytest.fixture(scope="session")
def example_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The files the examples name: packages of an addition model and a dataset for it."""
    root = tmp_path_factory.mktemp("doctest_files")
    code = root / "code" / "addition"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(textwrap.dedent(ADDITION))
    files = root / "files"
    files.mkdir()
    rows = _addition_package(files / "addition_model.zip", code.parent, ("batch",))
    (files / "model.zip").symlink_to(rows)
    _addition_package(files / "adder.zip", code.parent, ("batch", 3))
    data = files / "data"
    data.mkdir()
    for shard in range(2):
        x = np.arange(shard * 4, shard * 4 + 4, dtype=np.float32)
        np.savez(data / f"part-{shard}.npz", x=x, y=2 * x, target=3 * x)
    return sorted(files.iterdir())


def _import_or_skip(module_name: str) -> ModuleType:
    """Import a module, skipping the test when an optional dependency of it is not installed."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] in ("neuropod", module_name.split(".")[0]):
            raise
        pytest.skip(f"{module_name} needs {error.name}, which is not installed")


@pytest.mark.parametrize("module_name", _params())
def test_docstring_examples(
    module_name: str, example_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _import_or_skip(module_name)
    for path in example_files:
        (tmp_path / path.name).symlink_to(path)
    monkeypatch.chdir(tmp_path)

    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    examples = 0
    for test in finder.find(module, module_name, extraglobs={"np": np}):
        examples += len(test.examples)
        runner.run(test, out=report.write)
    assert examples, f"{module_name} holds '>>>' but doctest found no example in it"
    if runner.failures:
        pytest.fail(f"{runner.failures} example(s) of {module_name} failed:\n{report.getvalue()}")


def test_every_module_with_an_example_is_collected() -> None:
    names = _modules_with_examples()
    assert {"neuropod", "neuropod.loader", "neuropod.batch"} <= set(names)
    assert not any(name.endswith("__main__") for name in names)


def test_only_the_listed_modules_skip_examples() -> None:
    assert _modules_with_skipped_examples() == set(SKIPPED)


def test_a_module_whose_dependency_is_missing_is_skipped_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_missing.py").write_text("import neuropod_test_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="needs_missing needs neuropod_test_no_such_dependency"):
        _import_or_skip("needs_missing")


def test_a_missing_module_of_the_package_itself_fails() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"neuropod\.no_such_module"):
        _import_or_skip("neuropod.no_such_module")
