"""``neuropod-serve.json``: every mistake in the file names the file, the key, and what was expected."""

from __future__ import annotations

import json
import zipfile

import pytest

from neuropod.errors import OptionError
from neuropod.package import layout
from neuropod.serving.options import OPTIONS_FILE, ModelOptions, read_model_folder


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with zipfile.ZipFile(folder / "model.zip", "w") as archive:
        archive.writestr(layout.CONFIG, "{}")
    return folder


def write(folder, content):
    (folder / OPTIONS_FILE).write_text(content if isinstance(content, str) else json.dumps(content))


def test_a_valid_file(folder):
    write(folder, {"options": {"use_ope": True}, "max_batch_size": 4, "dynamic_batching": {}})
    path, options = read_model_folder(folder)
    assert path == folder / "model.zip"
    assert options == ModelOptions({"use_ope": True}, None, 4, {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read as JSON"),
        ([1, 2], "must hold a JSON object, got list"),
        (
            {"concurrency": 1, "bogus": 2},
            "unknown key(s) 'bogus'; accepted: concurrency, config, dynamic_batching,",
        ),
        ({"options": [1]}, "'options' must be a JSON object of load_neuropod options"),
        ({"concurrency": 0}, "concurrency must be an int >= 1, got 0"),
        ({"max_batch_size": True}, "max_batch_size must be an int >= 0, got True"),
        ({"dynamic_batching": {"delay": 1}}, "dynamic_batching must be an object with at most"),
        ({"dynamic_batching": {}}, "dynamic_batching needs max_batch_size >= 1"),
        ({"package": 3}, "'package' must be a path relative to the folder, got 3"),
        ({"package": "../elsewhere.zip"}, "'package' '../elsewhere.zip' is not a package inside"),
    ],
)
def test_mistakes_name_the_file(folder, content, message):
    write(folder, content)
    with pytest.raises(OptionError) as raised:
        read_model_folder(folder)
    assert str(raised.value).startswith(f"{folder / OPTIONS_FILE}: ")
    assert message in str(raised.value)


def test_a_folder_must_hold_exactly_one_package(folder):
    (folder / "model.zip").unlink()
    write(folder, {})
    with pytest.raises(OptionError, match="holds no package; put exactly one package beside"):
        read_model_folder(folder)


def test_an_explicit_package_loads_with_its_own_options(tmp_path):
    from neuropod.serving import Server
    from tests.serving.helpers import build_model

    package = build_model(tmp_path, "adder")
    options = {"adder": ModelOptions(load_options={"use_ope": True, "instances": 2})}
    with Server([package], http_port=0, grpc_port=None, model_options=options) as server:
        model = server.core.repository.get("adder").model
        assert model.instances == 2
        assert type(model._open_backend()).__name__ == "WorkerBackend"
