"""Packaging trained Ludwig models (platform ``torchscript``; no Ludwig needed to run them).

::

    create_ludwig_neuropod(ludwig_model_path=...)
    ├── saved_model.py   is it a saved Ludwig model, of a supported version? (no Ludwig needed)
    ├── a Python with Ludwig: ludwig_python, or this one if it has ludwig 0.11, else an isolated environment
    │   (``neuropod.environments``: built once with uv, cached, shared between processes)
    ├── export.py        run by that Python: LudwigModel.to_torchscript, flattened outputs,
    │                    the problem definition and test data
    └── create_package   a torchscript package, self-tested with the export's test data
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import neuropod
from neuropod.environments.build import Environment, EnvironmentSpec, ProgressCallback, ensure_environment
from neuropod.environments.cache import EnvironmentCache
from neuropod.environments.lock import RequirementLock
from neuropod.errors import BackendUnavailable, PackageError
from neuropod.integrations.ludwig.export import (
    DEFINITION_FILE,
    INPUT_PREFIX,
    MODEL_FILE,
    OUTPUT_PREFIX,
    TEST_DATA_FILE,
)
from neuropod.integrations.ludwig.saved_model import LUDWIG_REQUIREMENT, SUPPORTED_SERIES, SavedModel
from neuropod.package import layout
from neuropod.package.builder import PackageBuilder
from neuropod.packagers.common import CommonArgs, check_common_args, create_package

if TYPE_CHECKING:
    from typing_extensions import Unpack  # in typing from Python 3.11

logger = logging.getLogger("neuropod.packagers.ludwig")

#: How many lines of the export's error output a failure quotes.
ERROR_TAIL_LINES = 25

# Appended (never prepended) to the export's path, as for workers: the Ludwig environment has
# no neuropod installed.
_IMPORT_ROOT = str(Path(neuropod.__file__).resolve().parent.parent)
_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv.pop(1)); "
    "from neuropod.integrations.ludwig.export import main; main(sys.argv[1:])"
)


def print_progress(step: str) -> None:
    """The default ``progress`` of ``create_ludwig_neuropod``: one line on stderr per step."""
    print(f"neuropod: {step}", file=sys.stderr, flush=True)


def create_ludwig_neuropod(
    *,
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    ludwig_model_path: str | os.PathLike[str],
    ludwig_python: str | os.PathLike[str] | None = None,
    env_cache: str | os.PathLike[str] | None = None,
    offline: bool = False,
    progress: ProgressCallback | None = print_progress,
    **common: Unpack[CommonArgs],
) -> None:
    """Package a trained Ludwig model as a TorchScript neuropod that runs without Ludwig.

    The model is exported with ``LudwigModel.to_torchscript`` of ludwig 0.11.0, which puts
    Ludwig's preprocessing (normalization, vocabularies, tokenization) and postprocessing
    (class names, probabilities) inside the TorchScript module, so the package needs torch
    alone. Its problem definition comes from the model's config:

    - inputs, shape ``["batch"]``: number -> ``float32``, binary -> ``bool``,
      category and text -> ``string`` (one string per row);
    - outputs: ``<feature>_predictions`` (category: ``string``, binary: ``bool``, or
      ``string`` when trained on non-boolean labels, number: ``float32``), and
      ``<feature>_probabilities`` for category and binary (``float32 ["batch", classes]``).

    Ludwig runs in a separate process: ``ludwig_python`` when given, else this environment's
    Python when it has ludwig 0.11 installed, else an isolated environment with ludwig
    0.11.0 and this environment's torch version, built with uv on first use (about 6 GB,
    170 packages; cached in the environment cache, see ``neuropod env list``).

    Example::

        create_ludwig_neuropod(
            neuropod_path="churn.zip",
            model_name="churn",
            ludwig_model_path="results/experiment_run/model",
        )

    Args:
        neuropod_path: where to write the package (must not exist).
        model_name: the model's name.
        ludwig_model_path: the folder ``LudwigModel.save`` wrote (or a training run's
            ``model`` folder): ``model_hyperparameters.json``, ``training_set_metadata.json``
            and ``model_weights``. It must have been saved by Ludwig 0.11.x.
        ludwig_python: a Python interpreter with ludwig 0.11 installed, to export with instead
            of an isolated environment.
        env_cache: the environment cache directory (default: ``$NEUROPOD_ENV_CACHE``, else
            ``~/.cache/neuropod/envs``).
        offline: build the environment from uv's cache only, never the network.
        progress: called with each step (default: printed to stderr); ``None`` for silence.
        **common: the arguments every packager takes (see ``CommonArgs``). Without
            ``test_input_data``, the package is self-tested on a few rows made from the model's
            vocabularies and normalization, with the outputs Ludwig's module gave for them.

    Raises:
        PackageError: ``neuropod_path`` exists, the model path is not a saved Ludwig model, it
            was saved by an unsupported Ludwig version, a feature type has no mapping, or the
            export failed (the message quotes it).
        OptionError: an unknown keyword argument (``input_spec`` and ``output_spec`` included:
            they come from the model).
        BackendUnavailable: torch is not installed here, or uv is needed and missing.
        EnvironmentBuildError: building the Ludwig environment failed (the message quotes uv).
        TestDataMismatch: the package's outputs differ from the export's.
    """
    report = progress or _log_only
    check_common_args("create_ludwig_neuropod", common)
    PackageBuilder.check_path(neuropod_path)  # before minutes of work, not after
    saved = SavedModel.read(ludwig_model_path)
    _installed_torch()
    environment = None
    python: str
    if ludwig_python is not None:
        python = os.fspath(ludwig_python)
    elif _ludwig_installed_here():
        python = sys.executable
    else:
        report("ludwig 0.11 is not installed here: the export runs in an environment of its own")
        environment = ludwig_environment(env_cache=env_cache, offline=offline, progress=report)
        python = str(environment.python)
    try:
        with tempfile.TemporaryDirectory(prefix="neuropod-ludwig-") as tmp:
            exported = Path(tmp) / "export"
            _run_export(python, saved.path, exported, isolated=python != sys.executable, report=report)
            _package(neuropod_path, model_name, exported, common, report)
    finally:
        if environment is not None:
            environment.close()
    report(f"wrote {neuropod_path}")


def _log_only(step: str) -> None:
    logger.info("%s", step)


def _installed_torch() -> str:
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        raise BackendUnavailable(
            "create_ludwig_neuropod needs torch to test and run the TorchScript package it writes: "
            "pip install 'neuropod[torch]'"
        ) from None
    from packaging.version import Version

    return Version(version).public  # 2.13.0+cpu -> 2.13.0: the environment takes it from PyPI


def _ludwig_installed_here() -> bool:
    try:
        version = importlib.metadata.version("ludwig")
    except importlib.metadata.PackageNotFoundError:
        return False
    from packaging.version import InvalidVersion, Version

    try:
        release = Version(version).release
    except InvalidVersion:
        return False
    return tuple(release[:2]) in SUPPORTED_SERIES


def ludwig_environment(
    *,
    env_cache: str | os.PathLike[str] | None = None,
    offline: bool = False,
    progress: ProgressCallback | None = None,
) -> Environment:
    """The isolated environment the export runs in when Ludwig is not installed here.

    It holds ludwig 0.11.0 with this environment's torch and numpy versions (torch from PyPI,
    so that torchvision and torchaudio load beside it), and is built with uv on first use and
    cached (see ``neuropod.environments``). Its ``python`` can also train models.

    Args:
        env_cache: the environment cache directory (default: ``$NEUROPOD_ENV_CACHE``, else
            ``~/.cache/neuropod/envs``).
        offline: build from uv's cache only, never the network.
        progress: called with each step.

    Returns:
        The environment, held until its ``close``.

    Raises:
        BackendUnavailable: torch is not installed here, or uv is needed and missing.
        EnvironmentBuildError: uv failed (the message quotes it).
    """
    report = progress or _log_only
    # The same torch release as here, so that the module it saves loads here.
    lock = RequirementLock.parse(
        f"{LUDWIG_REQUIREMENT}\ntorch=={_installed_torch()}\n", "the Ludwig export's requirements"
    )
    spec = EnvironmentSpec.for_lock(lock)
    cache = EnvironmentCache(env_cache)
    if not cache.is_complete(spec.key):
        report(
            f"building an environment with {', '.join(spec.packages)} for the Ludwig export "
            f"(once; about 6 GB and 170 packages, which takes minutes)"
        )
    return ensure_environment(spec, cache, progress=report, offline=offline)


def _run_export(python: str, model: Path, out: Path, *, isolated: bool, report: ProgressCallback) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if isolated:
        # Another Python has its own packages; the application's path would shadow them.
        env.pop("PYTHONPATH", None)
    command = [python, "-c", _BOOTSTRAP, _IMPORT_ROOT, str(model), str(out)]
    report(f"exporting {model} with {python}")
    errors_path = out.parent / "export-stderr.txt"  # beside out, in the packager's temporary folder
    try:
        with (
            errors_path.open("w+", encoding="utf-8", errors="replace") as errors,
            subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True, env=env
            ) as process,
        ):
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    step = line.rstrip("\n")
                    if step.startswith("progress: "):
                        report(step.removeprefix("progress: "))
                    elif step:
                        logger.debug("ludwig export: %s", step)
                code = process.wait()
            except BaseException:
                process.kill()
                raise
            errors.seek(0)
            tail = errors.read().splitlines()[-ERROR_TAIL_LINES:]
    except FileNotFoundError as exc:
        raise PackageError(f"ludwig_python {python} cannot be run: {exc}") from None
    if code != 0:
        raise PackageError(
            f"Exporting the Ludwig model at {model} with {python} failed (exit code {code}); "
            f"its last output:\n" + "\n".join(tail)
        )


def _package(
    neuropod_path: str | os.PathLike[str],
    model_name: str,
    exported: Path,
    common: CommonArgs,
    report: ProgressCallback,
) -> None:
    definition = json.loads((exported / DEFINITION_FILE).read_text(encoding="utf-8"))
    args: dict[str, Any] = dict(common)
    if args.get("test_input_data") is None:
        with np.load(exported / TEST_DATA_FILE, allow_pickle=False) as data:
            args["test_input_data"] = _with_prefix(data, INPUT_PREFIX)
            if args.get("test_expected_out") is None:
                args["test_expected_out"] = _with_prefix(data, OUTPUT_PREFIX)
    report(
        f"packaging (exported with ludwig {definition['ludwig_version']}, torch "
        f"{definition['torch_version']}) and testing the package"
    )

    def write_model(builder: PackageBuilder) -> None:
        shutil.copyfile(exported / MODEL_FILE, builder.root / layout.DATA_DIR / MODEL_FILE)

    create_package(
        "create_ludwig_neuropod", "torchscript", neuropod_path, model_name,
        definition["input_spec"], definition["output_spec"], write_model, args,
    )  # fmt: skip


def _with_prefix(data: Any, prefix: str) -> dict[str, np.ndarray]:
    return {name.removeprefix(prefix): data[name] for name in data.files if name.startswith(prefix)}
