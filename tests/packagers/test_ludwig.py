"""create_ludwig_neuropod and ``neuropod ludwig``: a real Ludwig model, trained here, packaged and run
without Ludwig, in-process and out of process, against Ludwig's own predictions.

Ludwig is never installed in the test environment: the model is trained by
``ludwig_train.py`` run with the Python of the isolated environment the packager builds (and
caches, in the usual environment cache) for its export.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import OptionError, PackageError
from neuropod.cli.main import main as cli_main
from neuropod.loader import load_neuropod
from neuropod.packagers import create_ludwig_neuropod
from neuropod.packagers.ludwig import ludwig_environment

pytest.importorskip("torch")

TRAIN_SCRIPT = Path(__file__).with_name("ludwig_train.py")
INPUTS = {"x": np.float32, "color": str, "words": str, "flag": bool}


def fake_saved_model(folder: Path, config: dict[str, Any]) -> Path:
    """The files of a saved Ludwig model, with ``config``: enough to be refused before any export."""
    folder.mkdir()
    (folder / "model_hyperparameters.json").write_text(json.dumps(config))
    (folder / "training_set_metadata.json").write_text("{}")
    (folder / "model_weights").write_bytes(b"")
    return folder


def config(
    version: str | None = "0.11.0", input_type: str = "number", output_type: str = "binary"
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_features": [{"name": "x", "type": input_type}],
        "output_features": [{"name": "y", "type": output_type}],
    }
    if version is not None:
        out["ludwig_version"] = version
    return out


# --- refused before any environment is built (fast) ---


def test_a_folder_that_is_not_a_ludwig_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_weights").write_bytes(b"")
    with pytest.raises(
        PackageError, match=r"is not a saved Ludwig model: it has no model_hyperparameters\.json"
    ):
        create_ludwig_neuropod(
            neuropod_path=tmp_path / "out.zip", model_name="m", ludwig_model_path=tmp_path / "model"
        )
    with pytest.raises(PackageError, match="is not a directory"):
        create_ludwig_neuropod(
            neuropod_path=tmp_path / "out.zip", model_name="m", ludwig_model_path=tmp_path / "nope"
        )
    assert not (tmp_path / "out.zip").exists()


@pytest.mark.parametrize(
    ("version", "found"),
    [
        ("0.10.3", "Ludwig version 0.10.3"),
        ("0.12.1", "Ludwig version 0.12.1"),
        (None, "an unknown Ludwig version"),
    ],
)
def test_a_model_saved_by_an_unsupported_ludwig_version_is_refused(
    tmp_path: Path, version: str | None, found: str
) -> None:
    model = fake_saved_model(tmp_path / "model", config(version))
    with pytest.raises(PackageError, match=rf"saved by {found}.*supports models saved by Ludwig 0\.11\.x"):
        create_ludwig_neuropod(neuropod_path=tmp_path / "out.zip", model_name="m", ludwig_model_path=model)


@pytest.mark.parametrize(
    ("input_type", "output_type", "message"),
    [
        (
            "image",
            "binary",
            r"Input feature 'x' .* of type 'image'; the exporter supports input features of type "
            r"binary, category, number, text",
        ),
        (
            "number",
            "text",
            r"Output feature 'y' .* of type 'text'; the exporter supports output features of type "
            r"binary, category, number",
        ),
    ],
)
def test_a_feature_type_without_a_mapping_is_refused(
    tmp_path: Path, input_type: str, output_type: str, message: str
) -> None:
    model = fake_saved_model(tmp_path / "model", config(input_type=input_type, output_type=output_type))
    with pytest.raises(PackageError, match=message):
        create_ludwig_neuropod(neuropod_path=tmp_path / "out.zip", model_name="m", ludwig_model_path=model)


def test_wrong_arguments_are_refused_before_any_export(tmp_path: Path) -> None:
    model = fake_saved_model(tmp_path / "model", config())
    with pytest.raises(
        OptionError, match=r"create_ludwig_neuropod\(\) got unknown keyword argument\(s\) 'input_spec'"
    ):
        create_ludwig_neuropod(
            neuropod_path=tmp_path / "out.zip", model_name="m", ludwig_model_path=model, input_spec=[]
        )
    (tmp_path / "taken.zip").write_bytes(b"")
    with pytest.raises(PackageError, match=r"taken\.zip already exists"):
        create_ludwig_neuropod(neuropod_path=tmp_path / "taken.zip", model_name="m", ludwig_model_path=model)


def test_a_config_that_is_not_json_is_refused(tmp_path: Path) -> None:
    model = fake_saved_model(tmp_path / "model", {})
    (model / "model_hyperparameters.json").write_text("{not json")
    with pytest.raises(PackageError, match=r"model_hyperparameters\.json cannot be read as JSON"):
        create_ludwig_neuropod(neuropod_path=tmp_path / "out.zip", model_name="m", ludwig_model_path=model)


def test_the_command_line_reports_an_unsupported_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = fake_saved_model(tmp_path / "model", config("0.9.0"))
    code = cli_main(["ludwig", "--ludwig_model_path", str(model), "--neuropod_path", str(tmp_path / "out")])
    assert code == 2
    assert "saved by Ludwig version 0.9.0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_export_that_fails_is_reported_with_its_output(tmp_path: Path) -> None:
    """A Python without Ludwig: the export starts for real and fails importing it."""
    model = fake_saved_model(tmp_path / "model", config())
    with pytest.raises(
        PackageError, match=r"(?s)Exporting the Ludwig model at .* failed.*No module named 'ludwig'"
    ):
        create_ludwig_neuropod(
            neuropod_path=tmp_path / "out.zip",
            model_name="m",
            ludwig_model_path=model,
            ludwig_python=sys.executable,
            progress=None,
        )
    with pytest.raises(PackageError, match=r"ludwig_python .*no-such-python cannot be run"):
        create_ludwig_neuropod(
            neuropod_path=tmp_path / "out.zip",
            model_name="m",
            ludwig_model_path=model,
            ludwig_python=tmp_path / "no-such-python",
        )
    assert not (tmp_path / "out.zip").exists()


# --- the real thing (slow: an environment with Ludwig, cached after its first build) ---


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Ludwig model (number, category, text and binary inputs) and Ludwig's predictions."""
    started = time.perf_counter()
    environment = ludwig_environment(progress=print)
    try:
        built = time.perf_counter()
        out = tmp_path_factory.mktemp("ludwig")
        result = subprocess.run(
            [str(environment.python), str(TRAIN_SCRIPT), str(out)],
            env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "CUDA_VISIBLE_DEVICES": ""},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        environment.close()
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"environment ready in {built - started:.1f} s, trained in {time.perf_counter() - built:.1f} s")
    return out


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a cold cache builds the environment first (about 6 GB)
def test_a_trained_ludwig_model_runs_without_ludwig_as_ludwig_predicts(trained: Path, tmp_path: Path) -> None:
    assert "ludwig" not in sys.modules
    steps: list[str] = []
    package = tmp_path / "tiny.zip"
    create_ludwig_neuropod(
        neuropod_path=package, model_name="tiny", ludwig_model_path=trained / "model", progress=steps.append
    )
    assert any("LudwigModel.to_torchscript" in step for step in steps), steps
    assert "ludwig" not in sys.modules

    rows = json.loads((trained / "rows.json").read_text())
    inputs = {name: np.asarray(rows[name], dtype=dtype) for name, dtype in INPUTS.items()}
    with np.load(trained / "predictions.npz") as saved:
        expected = {name: saved[name] for name in saved.files}
    assert sorted(expected) == sorted(
        [
            "label_predictions",
            "label_probabilities",
            "score_predictions",
            "positive_predictions",
            "positive_probabilities",
        ]
    )
    for use_ope in (False, True):
        with load_neuropod(package, use_ope=use_ope) as model:
            assert model.platform == "torchscript"
            assert {s["name"]: (s["dtype"], s["shape"]) for s in model.inputs} == {
                "x": ("float32", ["batch"]), "color": ("string", ["batch"]),
                "words": ("string", ["batch"]), "flag": ("bool", ["batch"]),
            }  # fmt: skip
            assert {s["name"]: (s["dtype"], s["shape"]) for s in model.outputs} == {
                "label_predictions": ("string", ["batch"]),
                "label_probabilities": ("float32", ["batch", 3]),
                "score_predictions": ("float32", ["batch"]),
                "positive_predictions": ("bool", ["batch"]),
                "positive_probabilities": ("float32", ["batch", 2]),
            }  # fmt: skip
            out = model.infer(inputs)
        assert sorted(out) == sorted(expected)
        for name, want in expected.items():
            got = out[name]
            assert got.shape == want.shape, name
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
            else:
                assert got.tolist() == want.tolist(), name


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_command_line_packages_a_directory_that_passes_its_self_test(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exporting with ``--ludwig-python``: the isolated environment's Python, named explicitly."""
    package = tmp_path / "tiny"
    environment = ludwig_environment()
    environment.close()
    code = cli_main(
        ["ludwig", "-m", str(trained / "model"), "-n", str(package), "-nm", "tiny_cli", "--package_as_dir",
         "--ludwig-python", str(environment.python)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"neuropod: exporting {trained / 'model'} with {environment.python}" in captured.err
    assert package.is_dir()
    assert cli_main(["test", str(package)]) == 0
    with load_neuropod(package) as model:
        assert model.name == "tiny_cli"


@pytest.mark.slow
def test_a_model_saved_by_another_ludwig_version_is_refused_by_its_real_files(
    trained: Path, tmp_path: Path
) -> None:
    model = shutil.copytree(trained / "model", tmp_path / "model")
    settings = json.loads((model / "model_hyperparameters.json").read_text())
    assert settings["ludwig_version"] == "0.11.0"
    settings["ludwig_version"] = "0.12.0"
    (model / "model_hyperparameters.json").write_text(json.dumps(settings))
    with pytest.raises(
        PackageError,
        match=r"saved by Ludwig version 0\.12\.0; the exporter supports models saved by Ludwig 0\.11\.x",
    ):
        create_ludwig_neuropod(neuropod_path=tmp_path / "out.zip", model_name="m", ludwig_model_path=model)
