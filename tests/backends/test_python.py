"""The python backend and its packager: the entrypoint contract, isolated code, errors, data.

What every backend shares (validation, lifetime, self-test) is in ``tests/test_conformance.py``.
"""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import (
    BackendUnavailable,
    InferenceError,
    NeuropodModel,
    OptionError,
    PackageError,
    ValidationError,
)
from neuropod.loader import load_neuropod
from neuropod.packagers import create_python_neuropod
from tests.models import BYTES_SPEC, RAW_BYTES, byte_array
from tests.models.python import BYTES

X_SPEC = [{"name": "x", "dtype": "float32", "shape": (None,)}]
OUT_SPEC = [{"name": "out", "dtype": "float32", "shape": (None,)}]
X = np.array([1.0, 2.0], np.float32)


def write_code(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``root`` and return ``root``."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def build(
    path: Path,
    files: dict[str, str],
    *,
    entrypoint_package: str = "model.main",
    entrypoint: str = "get_model",
    input_spec: list[dict[str, Any]] = X_SPEC,
    output_spec: list[dict[str, Any]] = OUT_SPEC,
    **kwargs: Any,
) -> Path:
    """Package ``files`` (rooted at a fresh python_root beside ``path``) as a python model."""
    python_root = write_code(path.parent / f"{path.name}-code", files)
    create_python_neuropod(
        neuropod_path=path,
        model_name=path.name,
        input_spec=input_spec,
        output_spec=output_spec,
        code_path_spec=[
            {"python_root": str(python_root), "dirs_to_package": sorted({Path(f).parts[0] for f in files})}
        ],
        entrypoint_package=entrypoint_package,
        entrypoint=entrypoint,
        **kwargs,
    )
    return path


def namespace_state() -> tuple[set[str], int]:
    return {name for name in sys.modules if name.startswith("_neuropod_code_")}, len(sys.meta_path)


# --- The entrypoint contract -----------------------------------------------------------------

CONTRACT = {
    "model/main.py": """
        import os

        import numpy as np


        class Model:
            def __init__(self, data_dir):
                with open(os.path.join(data_dir, "greeting.txt")) as f:
                    self.greeting = f.read()
                self.data_dir = data_dir

            def __call__(self, **inputs):
                return {
                    "greeting": np.array([self.greeting]),
                    "names": np.array(sorted(inputs)),
                    "types": np.array(sorted({type(v).__name__ for v in inputs.values()})),
                    "data_dir_is_absolute": np.array([os.path.isabs(self.data_dir)]),
                }


        def get_model(data_dir):
            return Model(data_dir)
    """
}


def test_entrypoint_contract(tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_text("hello")
    path = build(
        tmp_path / "contract.zip",
        CONTRACT,
        input_spec=[*X_SPEC, {"name": "w", "dtype": "string", "shape": (None,)}],
        output_spec=[
            {"name": "greeting", "dtype": "string", "shape": (1,)},
            {"name": "names", "dtype": "string", "shape": (None,)},
            {"name": "types", "dtype": "string", "shape": (None,)},
            {"name": "data_dir_is_absolute", "dtype": "bool", "shape": (1,)},
        ],
        data_paths=[{"path": str(tmp_path / "greeting.txt"), "packaged_name": "greeting.txt"}],
    )
    with load_neuropod(path) as model:
        assert model.platform == "python"
        out = model.infer({"x": X, "w": np.array(["a"])})
    assert out["greeting"].tolist() == ["hello"]  # the entrypoint got the data directory
    assert out["names"].tolist() == ["w", "x"]  # inputs arrive as keyword arguments
    assert out["types"].tolist() == ["ndarray"]  # as numpy arrays
    assert out["data_dir_is_absolute"].tolist() == [True]


# --- Isolated code -------------------------------------------------------------------------


def same_named_code(factor: int, offset: int) -> dict[str, str]:
    """A package called ``model`` whose behaviour depends on its own modules."""
    return {
        "model/__init__.py": "",
        "model/main.py": """
            import model.helpers
            from model.helpers import scale


            def get_model(data_dir):
                def infer(x):
                    from model.lazy import offset  # imported at call time, not at load

                    return {"out": scale(x) + offset() + 0 * model.helpers.scale(x)}

                return infer
        """,
        "model/helpers.py": f"""
            FACTOR = {factor}


            def scale(x):
                return x * FACTOR
        """,
        "model/lazy.py": f"""
            from .helpers import FACTOR  # relative imports work too


            def offset():
                return {offset} + 0 * FACTOR
        """,
    }


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("twins")
    return (
        build(root / "double.zip", same_named_code(2, 1)),
        build(root / "triple", same_named_code(3, 100), package_as_zip=False),
    )


def test_same_package_names_load_side_by_side(
    twins: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process has a `model` module of its own; neither package may see or replace it.
    own = types.ModuleType("model")
    monkeypatch.setitem(sys.modules, "model", own)
    with load_neuropod(twins[0]) as double, load_neuropod(twins[1]) as triple:
        np.testing.assert_array_equal(triple.infer({"x": X})["out"], X * 3 + 100)
        np.testing.assert_array_equal(double.infer({"x": X})["out"], X * 2 + 1)
        np.testing.assert_array_equal(triple.infer({"x": X})["out"], X * 3 + 100)
    assert sys.modules["model"] is own


def test_namespace_is_removed_on_close(twins: tuple[Path, Path]) -> None:
    modules_before, finders_before = namespace_state()
    model = load_neuropod(twins[1])
    model.infer({"x": X})
    loaded = namespace_state()[0] - modules_before
    assert any(name.endswith(".model.lazy") for name in loaded)
    model.close()
    assert namespace_state() == (modules_before, finders_before)
    assert "model" not in sys.modules and "model.helpers" not in sys.modules
    assert not any(key.startswith(str(twins[1])) for key in sys.path_importer_cache)


PICKLING = {
    "model/__init__.py": "",
    "model/things.py": """
        class Scaler:
            def __call__(self, x):
                return x * self.k
    """,
    "model/main.py": """
        import importlib
        import os
        import pickle


        def get_model(data_dir):
            path = os.path.join(data_dir, "scaler.bin")
            if os.environ.get("NEUROPOD_TEST_LOADER") == "torch":
                import torch

                scaler = torch.load(path, weights_only=False)
            else:
                with open(path, "rb") as f:
                    scaler = pickle.load(f)
            things = importlib.import_module("model.things")
            assert type(scaler) is things.Scaler, type(scaler)
            return lambda x: {"out": scaler(x)}
    """,
}


@pytest.mark.parametrize("loader", ["pickle", "torch"])
def test_entrypoint_unpickles_its_own_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str
) -> None:
    # Pickle an instance of `model.things.Scaler`, as the training process would have.
    scaler_cls = type("Scaler", (), {"__module__": "model.things"})
    with monkeypatch.context() as patch:
        things = types.ModuleType("model.things")
        things.Scaler = scaler_cls  # type: ignore[attr-defined]
        patch.setitem(sys.modules, "model", types.ModuleType("model"))
        patch.setitem(sys.modules, "model.things", things)
        scaler = scaler_cls()
        scaler.k = 5  # type: ignore[attr-defined]
        if loader == "torch":
            torch = pytest.importorskip("torch")
            torch.save(scaler, tmp_path / "scaler.bin")
        else:
            (tmp_path / "scaler.bin").write_bytes(pickle.dumps(scaler))
    monkeypatch.setenv("NEUROPOD_TEST_LOADER", loader)
    path = build(
        tmp_path / "pickling",
        PICKLING,
        data_paths=[{"path": str(tmp_path / "scaler.bin"), "packaged_name": "scaler.bin"}],
        test_input_data={"x": X},
        test_expected_out={"out": X * 5},
    )
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["out"], X * 5)
    assert "model" not in sys.modules


# --- Errors --------------------------------------------------------------------------------


def simple(body: str) -> dict[str, str]:
    return {"model/main.py": body}


@pytest.mark.parametrize(
    ("files", "entrypoint_package", "message"),
    [
        pytest.param(
            simple("x = 1\n"), "model.main", "module model.main has no attribute 'get_model'", id="missing"
        ),
        pytest.param(simple("get_model = 3\n"), "model.main", "is a int, not a function", id="not-callable"),
        pytest.param(
            simple("def get_model(d):\n    return 3\n"),
            "model.main",
            "returned int, but must return a callable",
            id="returns-int",
        ),
        pytest.param(
            simple("x = 1\n"),
            "model.absent",
            "module 'model.absent' is not in the package's code",
            id="no-module",
        ),
        pytest.param(
            simple("x = 1\n"), "elsewhere", "module 'elsewhere' is not in the package's code", id="no-package"
        ),
    ],
)
def test_bad_entrypoint(tmp_path: Path, files: dict[str, str], entrypoint_package: str, message: str) -> None:
    path = build(tmp_path / "bad", files, entrypoint_package=entrypoint_package)
    before = namespace_state()
    with pytest.raises(PackageError, match=message):
        load_neuropod(path)
    assert namespace_state() == before  # a failed load leaves nothing behind


def test_entrypoint_raising(tmp_path: Path) -> None:
    path = build(tmp_path / "raising", simple("def get_model(d):\n    raise KeyError('weights')\n"))
    with pytest.raises(PackageError, match=r"entrypoint model.main.get_model failed: KeyError") as info:
        load_neuropod(path)
    assert isinstance(info.value.__cause__, KeyError)


def test_missing_dependency(tmp_path: Path) -> None:
    # Laid out as the original would: requirements the resolver never pinned, no manifest.
    path = build(
        tmp_path / "needy",
        simple("import neuropod_no_such_dependency\n\ndef get_model(d):\n    pass\n"),
        package_as_zip=False,
    )
    (path / "0" / "requirements.in").write_text("neuropod_no_such_dependency==1.0\n")
    (path / "manifest.json").unlink()
    with pytest.raises(BackendUnavailable, match=r"neuropod_no_such_dependency.*0/requirements.in") as info:
        load_neuropod(path)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


@pytest.fixture(scope="module")
def misbehaving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeuropodModel]:
    code = simple(
        """
        import numpy as np


        def get_model(data_dir):
            def infer(x):
                mode = int(x[0])
                if mode == 0:
                    return [x]
                if mode == 1:
                    return {"out": x.tolist()}
                if mode == 2:
                    return {"out": x * (1 // (mode - 2))}
                return {"out": x.astype(np.float64)}

            return infer
        """
    )
    with load_neuropod(build(tmp_path_factory.mktemp("misbehaving") / "m", code)) as model:
        yield model


def test_returning_a_list_not_a_dict(misbehaving: NeuropodModel) -> None:
    with pytest.raises(InferenceError, match="must return a dict of numpy arrays, but returned list"):
        misbehaving.infer({"x": np.array([0.0], np.float32)})


def test_returning_a_list_instead_of_an_array(misbehaving: NeuropodModel) -> None:
    with pytest.raises(
        ValidationError, match="Tensor 'out' in the output spec is expected to be a numpy array"
    ):
        misbehaving.infer({"x": np.array([1.0], np.float32)})


def test_exception_inside_the_model(misbehaving: NeuropodModel) -> None:
    with pytest.raises(InferenceError, match="ZeroDivisionError") as info:
        misbehaving.infer({"x": np.array([2.0], np.float32)})
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_output_of_the_wrong_type(misbehaving: NeuropodModel) -> None:
    with pytest.raises(
        ValidationError,
        match="'out' in the output spec is expected to be of type float32, but was of type float64",
    ):
        misbehaving.infer({"x": np.array([3.0], np.float32)})


def test_unknown_load_option(tmp_path: Path) -> None:
    path = build(tmp_path / "m", simple("def get_model(d):\n    return lambda x: {'out': x}\n"))
    with pytest.raises(OptionError, match="'batch_size'"):
        load_neuropod(path, batch_size=3)


# --- Packaging ------------------------------------------------------------------------------

READ_DATA = simple(
    """
    import os

    import numpy as np


    def get_model(data_dir):
        def infer(x):
            found = []
            for root, _dirs, files in os.walk(data_dir):
                for name in files:
                    path = os.path.join(root, name)
                    with open(path) as f:
                        found.append(os.path.relpath(path, data_dir).replace(os.sep, "/") + "=" + f.read())
            return {"files": np.array(sorted(found))}

        return infer
    """
)


def test_data_paths_are_copied(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "words.txt").write_text("W")
    (tmp_path / "vocab" / "__pycache__").mkdir()
    (tmp_path / "vocab" / "__pycache__" / "junk.pyc").write_text("J")
    path = build(
        tmp_path / "data",
        READ_DATA,
        output_spec=[{"name": "files", "dtype": "string", "shape": (None,)}],
        data_paths=[
            {"path": str(tmp_path / "a.txt"), "packaged_name": "nested/dir/a.txt"},
            {"path": str(tmp_path / "vocab"), "packaged_name": "vocab"},
        ],
        package_as_zip=False,
    )
    assert (path / "0" / "data" / "nested" / "dir" / "a.txt").read_text() == "A"
    with load_neuropod(path) as model:
        files = model.infer({"x": X})["files"].tolist()
    assert files == ["nested/dir/a.txt=A", "vocab/words.txt=W"]


@pytest.mark.parametrize(
    ("packaged_name", "message"),
    [
        ("/etc/passwd", "must be a relative path inside the package"),
        ("../escape.txt", "must be a relative path inside the package"),
        ("", "must be a non-empty relative path"),
        (None, "must be a non-empty relative path"),
    ],
)
def test_packaged_name_validation(tmp_path: Path, packaged_name: Any, message: str) -> None:
    (tmp_path / "a.txt").write_text("A")
    with pytest.raises(PackageError, match=message):
        build(
            tmp_path / "pkg",
            READ_DATA,
            data_paths=[{"path": str(tmp_path / "a.txt"), "packaged_name": packaged_name}],
        )
    assert not (tmp_path / "pkg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "pkg-code"]  # no staging left


def test_data_paths_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    a = str(tmp_path / "a.txt")
    with pytest.raises(PackageError, match=r"'./w.txt' is used by more than one"):
        build(
            tmp_path / "p1",
            READ_DATA,
            data_paths=[{"path": a, "packaged_name": "w.txt"}, {"path": a, "packaged_name": "./w.txt"}],
        )
    with pytest.raises(PackageError, match="does not exist"):
        build(
            tmp_path / "p2",
            READ_DATA,
            data_paths=[{"path": str(tmp_path / "nope"), "packaged_name": "w.txt"}],
        )
    with pytest.raises(PackageError, match=r"must be \{'path', 'packaged_name'\}"):
        build(tmp_path / "p3", READ_DATA, data_paths=[{"path": a}])


def test_package_inside_python_root_is_refused(tmp_path: Path) -> None:
    python_root = write_code(tmp_path / "code", READ_DATA)
    with pytest.raises(PackageError, match="must not be inside python_root"):
        create_python_neuropod(
            neuropod_path=python_root / "out" / "pkg",
            model_name="m",
            input_spec=X_SPEC,
            output_spec=OUT_SPEC,
            code_path_spec=[{"python_root": str(python_root), "dirs_to_package": ["model"]}],
            entrypoint_package="model.main",
            entrypoint="get_model",
        )
    assert sorted(p.name for p in python_root.iterdir()) == ["model"]  # nothing was written there


@pytest.mark.parametrize(
    ("dirs", "message"),
    [(["missing"], "does not exist"), (["../model"], "relative to python_root"), ("model", "must be a list")],
)
def test_code_path_spec_errors(tmp_path: Path, dirs: Any, message: str) -> None:
    python_root = write_code(tmp_path / "code", READ_DATA)
    with pytest.raises(PackageError, match=message):
        create_python_neuropod(
            neuropod_path=tmp_path / "pkg",
            model_name="m",
            input_spec=X_SPEC,
            output_spec=OUT_SPEC,
            code_path_spec=[{"python_root": str(python_root), "dirs_to_package": dirs}],
            entrypoint_package="model.main",
            entrypoint="get_model",
        )


@pytest.mark.parametrize(
    ("entrypoint_package", "entrypoint"),
    [("model.main", "a.b"), ("model-main", "get_model"), ("", "get_model")],
)
def test_entrypoint_names_are_checked(tmp_path: Path, entrypoint_package: str, entrypoint: str) -> None:
    with pytest.raises(PackageError, match="entrypoint"):
        build(tmp_path / "pkg", READ_DATA, entrypoint_package=entrypoint_package, entrypoint=entrypoint)


def test_package_layout(tmp_path: Path) -> None:
    path = build(
        tmp_path / "layout",
        {"model/main.py": "def get_model(d):\n    return lambda x: {'out': x}\n", "model/sub/deep.py": ""},
        package_as_zip=False,
    )
    # (requirements and their lock file are tested in tests/environments/test_environments.py, offline)
    assert json.loads((path / "0" / "config.json").read_text()) == {
        "entrypoint": "get_model",
        "entrypoint_package": "model.main",
    }
    assert json.loads((path / "config.json").read_text())["platform"] == "python"
    # Every code directory became a regular package, as in the original.
    assert (path / "0" / "code" / "model" / "__init__.py").is_file()
    assert (path / "0" / "code" / "model" / "sub" / "__init__.py").is_file()
    with load_neuropod(path) as model:
        np.testing.assert_array_equal(model.infer({"x": X})["out"], X)


def test_bytes_round_trip_in_process_and_test_data(tmp_path: Path) -> None:
    def package(name: str, **kwargs: Any) -> Path:
        files = {"model/main.py": BYTES, "model/__init__.py": ""}
        return build(tmp_path / name, files, **BYTES_SPEC, **kwargs)

    with load_neuropod(package("bytes")) as model:
        out = model.infer({"s": byte_array(RAW_BYTES)})["out"]
        assert out.dtype == object and out.tolist() == [b"<" + item + b">" for item in RAW_BYTES]
        # an S array is handed to the model as an object array of bytes
        assert model.infer({"s": np.array([b"\xff\x00a"])})["out"].tolist() == [b"<\xff\x00a>"]
    # test data is stored without pickle: bytes as an S array, which would drop a trailing NUL
    with pytest.raises(PackageError) as info:
        package("nul", test_input_data={"s": byte_array([b"a\x00"])})
    assert str(info.value) == (
        "Test tensor 's' of dtype object cannot be stored: 's' holds bytes ending with a NUL byte "
        "(element 0), which a numpy S array, the only form .npy files store bytes in without "
        "pickle, would drop"
    )
