"""neuropod.errors holds every exception class of the package, in the tree its docstring draws."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from pathlib import Path

import pytest

import neuropod.errors as errors

SRC = Path(__file__).resolve().parents[1] / "src" / "neuropod"


def _exception_names(module: object) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }


BUILTIN_EXCEPTIONS = _exception_names(builtins)
#: Always caught where they are raised, never seen by a user: in the tree, not in ``__all__``.
INTERNAL = ["ChannelClosed", "ClientGone", "RpcAborted", "UvFailed"]


def _exception_classes_outside_errors() -> list[str]:
    known = BUILTIN_EXCEPTIONS | _exception_names(errors)
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(base).rpartition(".")[2] for base in node.bases}
            if bases & known or node.name.endswith(("Error", "Exception")):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    return found


def test_no_exception_class_is_defined_outside_neuropod_errors():
    assert _exception_classes_outside_errors() == []


def test_every_error_is_exported_and_drawn_in_the_tree():
    defined = sorted(_exception_names(errors))
    assert sorted(set(defined) - set(errors.__all__)) == INTERNAL
    assert errors.__all__ == sorted(errors.__all__)
    drawn = re.findall(r"^ {4}[│├└─ ]*([A-Z]\w+)", errors.__doc__ or "", re.MULTILINE)
    assert sorted(drawn) == defined


@pytest.mark.parametrize(
    ("old_module", "name"),
    [
        ("neuropod.serving.errors", "ServingError"),
        ("neuropod.serving.errors", "BadRequest"),
        ("neuropod.serving.errors", "Unauthenticated"),
        ("neuropod.serving.errors", "NotFound"),
        ("neuropod.serving.errors", "PayloadTooLarge"),
        ("neuropod.serving.errors", "Unavailable"),
        ("neuropod.serving.errors", "InternalError"),
        ("neuropod.serving.http_app", "MethodNotAllowed"),
        ("neuropod.protocol.errors", "ProtocolError"),
        ("neuropod.protocol", "ProtocolError"),
        ("neuropod.cli.errors", "CommandError"),
        ("neuropod.environments.errors", "RequirementsError"),
        ("neuropod.environments.errors", "FrameworkVersionError"),
        ("neuropod.environments.errors", "EnvironmentBuildError"),
        ("neuropod.environments", "FrameworkVersionError"),
        ("neuropod.batch", "DatasetError"),
        ("neuropod.batch.dataset", "DatasetError"),
        ("neuropod.worker", "RemoteTraceback"),
        ("neuropod.worker.channel", "ChannelClosed"),
        ("neuropod.worker.session", "WorkerGone"),
        ("neuropod.environments.resolver", "UvFailed"),
    ],
)
def test_old_import_paths_name_the_same_class(old_module, name):
    assert getattr(importlib.import_module(old_module), name) is getattr(errors, name)


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("ProtocolError", ValueError),
        ("ProtocolError", RuntimeError),
        ("RequirementsError", ValueError),
        ("FrameworkVersionError", ImportError),
        ("EnvironmentBuildError", RuntimeError),
        ("DatasetError", ValueError),
        ("WorkerGone", RuntimeError),
        ("WorkerCrashed", RuntimeError),
        ("InferenceTimeout", TimeoutError),
    ],
)
def test_errors_keep_the_builtin_they_derived_from(name, builtin):
    assert issubclass(getattr(errors, name), builtin)


def test_only_the_internal_and_chained_errors_stand_outside_the_neuropod_error_root():
    names = _exception_names(errors)
    outside = sorted(name for name in names if not issubclass(getattr(errors, name), errors.NeuropodError))
    assert outside == ["ChannelClosed", "ClientGone", "RemoteTraceback", "RpcAborted", "UvFailed"]


def test_serving_errors_answer_their_status():
    from neuropod.serving.errors import classify

    assert classify(errors.MethodNotAllowed("no")) == (405, "UNIMPLEMENTED")
    assert classify(errors.ProtocolError("bad")) == (400, "INVALID_ARGUMENT")
    assert classify(errors.NotFound("gone")) == (404, "NOT_FOUND")
