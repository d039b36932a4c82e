"""The original's utility modules: ``neuropod.utils.config_utils`` and ``neuropod.utils.eval_utils``."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from neuropod import PackageError, SpecError, TestDataMismatch, ValidationError
from neuropod.packagers import create_placeholder_neuropod
from neuropod.utils.config_utils import (
    canonicalize_tensor_spec,
    read_neuropod_config,
    validate_tensor_spec,
    write_neuropod_config,
)
from neuropod.utils.eval_utils import (
    check_output_matches_expected,
    load_and_test_neuropod,
    load_test_data,
    save_test_data,
)

INPUT_SPEC = [
    {"name": "x", "dtype": "double", "shape": ["batch", 2]},
    {"name": "ids", "dtype": "string", "shape": ["batch"]},
]
OUTPUT_SPEC = [{"name": "out", "dtype": "float32", "shape": ["batch"]}]

GOLDEN_CONFIG = """\
{
    "custom_ops": [
        "my_op.so"
    ],
    "input_spec": [
        {
            "dtype": "float64",
            "name": "x",
            "shape": [
                "batch",
                2
            ]
        },
        {
            "dtype": "string",
            "name": "ids",
            "shape": [
                "batch"
            ]
        }
    ],
    "input_tensor_device": {
        "ids": "CPU",
        "x": "GPU"
    },
    "name": "my_model",
    "output_spec": [
        {
            "dtype": "float32",
            "name": "out",
            "shape": [
                "batch"
            ]
        }
    ],
    "platform": "torchscript",
    "platform_version_semver": ">=1.13"
}"""


# config_utils


def test_write_neuropod_config_golden_text(tmp_path):
    write_neuropod_config(
        tmp_path,
        "my_model",
        "torchscript",
        INPUT_SPEC,
        OUTPUT_SPEC,
        platform_version_semver=">=1.13",
        custom_ops=["my_op.so"],
        input_tensor_device={"ids": "CPU"},
    )
    assert (tmp_path / "config.json").read_text() == GOLDEN_CONFIG


def test_write_neuropod_config_defaults_and_ignored_arguments(tmp_path):
    write_neuropod_config(
        neuropod_path=str(tmp_path),
        model_name="m",
        platform="python",
        input_spec=INPUT_SPEC,
        output_spec=OUTPUT_SPEC,
        default_input_tensor_device="CPU",
        some_future_argument=True,
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_ops"] == []
    assert config["platform_version_semver"] == "*"
    assert config["input_tensor_device"] == {"x": "CPU", "ids": "CPU"}


def test_write_neuropod_config_rejects_a_bad_device(tmp_path):
    with pytest.raises(SpecError) as info:
        write_neuropod_config(
            tmp_path, "m", "python", INPUT_SPEC, OUTPUT_SPEC, input_tensor_device={"x": "TPU"}
        )
    assert str(info.value) == "The device of input 'x' must be 'GPU' or 'CPU', got 'TPU'"
    assert not (tmp_path / "config.json").exists()


def test_write_neuropod_config_rejects_a_device_for_an_unknown_input(tmp_path):
    with pytest.raises(SpecError) as info:
        write_neuropod_config(
            tmp_path, "m", "python", INPUT_SPEC, OUTPUT_SPEC, input_tensor_device={"z": "CPU"}
        )
    assert str(info.value) == "input_tensor_device names tensor(s) 'z' that are not in the input spec"


def test_read_neuropod_config_round_trip(tmp_path):
    write_neuropod_config(
        tmp_path, "my_model", "torchscript", INPUT_SPEC, OUTPUT_SPEC, custom_ops=["my_op.so"]
    )
    assert read_neuropod_config(tmp_path) == {
        "name": "my_model",
        "platform": "torchscript",
        "platform_version_semver": "*",
        "input_spec": [
            {"name": "x", "dtype": "float64", "shape": ["batch", 2]},
            {"name": "ids", "dtype": "string", "shape": ["batch"]},
        ],
        "output_spec": [{"name": "out", "dtype": "float32", "shape": ["batch"]}],
        "custom_ops": ["my_op.so"],
        "input_tensor_device": {"x": "GPU", "ids": "GPU"},
    }


def test_read_neuropod_config_of_an_original_config(tmp_path):
    # Older configs lack devices and custom ops and were written without sorted keys
    config = {"name": "m", "platform": "python", "input_spec": INPUT_SPEC, "output_spec": OUTPUT_SPEC}
    (tmp_path / "config.json").write_text(json.dumps(config))
    read = read_neuropod_config(tmp_path)
    assert read["input_tensor_device"] == {"x": "GPU", "ids": "GPU"}
    assert read["custom_ops"] == []
    assert read["input_spec"][0]["dtype"] == "float64"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ([], "must hold a JSON object, got list"),
        ({"name": "m", "platform": "python"}, "lacks the field(s) input_spec, output_spec"),
        (
            {"name": 3, "platform": "python", "input_spec": [], "output_spec": []},
            "field 'name' must be a string, got 3",
        ),
        (
            {"name": "m", "platform": "python", "input_spec": [], "output_spec": [], "custom_ops": "a.so"},
            "field 'custom_ops' must be a list of strings, got 'a.so'",
        ),
        (
            {
                "name": "m",
                "platform": "python",
                "input_spec": [],
                "output_spec": [],
                "input_tensor_device": "CPU",
            },
            "field 'input_tensor_device' must be an object of input name to 'GPU' or 'CPU', got 'CPU'",
        ),
    ],
)
def test_read_neuropod_config_rejects_malformed_configs(tmp_path, config, problem):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(PackageError) as info:
        read_neuropod_config(tmp_path)
    separator = " " if problem.startswith(("must", "lacks")) else ": "
    assert str(info.value) == f"{path}{separator}{problem}"


def test_read_neuropod_config_names_the_bad_spec(tmp_path):
    path = tmp_path / "config.json"
    config = {"name": "m", "platform": "python", "input_spec": [{"name": "x", "dtype": "f", "shape": [-1]}]}
    path.write_text(json.dumps({**config, "output_spec": []}))
    with pytest.raises(PackageError) as info:
        read_neuropod_config(tmp_path)
    assert str(info.value) == (
        f"{path}: Tensor 'x': every shape item must be None, a positive int or a symbol name, got -1 in [-1]"
    )


def test_read_neuropod_config_of_a_directory_without_one(tmp_path):
    with pytest.raises(PackageError) as info:
        read_neuropod_config(tmp_path)
    assert str(info.value) == f"The model config is missing: {tmp_path / 'config.json'} does not exist"


def test_read_neuropod_config_that_is_a_directory(tmp_path):
    (tmp_path / "config.json").mkdir()
    with pytest.raises(PackageError) as info:
        read_neuropod_config(tmp_path)
    assert str(info.value).startswith(f"The model config at {tmp_path / 'config.json'} cannot be read: ")


def test_validate_tensor_spec_accepts_a_good_spec():
    assert validate_tensor_spec(INPUT_SPEC) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            [
                {"name": "x", "dtype": "float32", "shape": [None]},
                {"name": "x", "dtype": "int64", "shape": []},
            ],
            "Tensor 'x' appears more than once in the tensor spec",
        ),
        (
            [{"name": "x", "dtype": "float32", "shape": [1.5]}],
            "Tensor 'x': every shape item must be None, a positive int or a symbol name, got 1.5 in [1.5]",
        ),
        (
            [{"name": "x", "dtype": "float32"}],
            "Tensor spec {'name': 'x', 'dtype': 'float32'} must have exactly the keys name, dtype and "
            "shape: missing shape",
        ),
    ],
)
def test_validate_tensor_spec_rejects_a_bad_spec(spec, message):
    with pytest.raises(SpecError) as info:
        validate_tensor_spec(spec)
    assert str(info.value) == message


def test_validate_tensor_spec_raises_value_error_as_the_original_did():
    with pytest.raises(ValueError):
        validate_tensor_spec([{"name": "x", "dtype": "nope", "shape": []}])


def test_canonicalize_tensor_spec():
    spec = [
        {"name": "x", "dtype": "double", "shape": (None, "batch", 2)},
        {"name": "y", "dtype": np.float32, "shape": []},
        {"name": "s", "dtype": np.str_, "shape": [None]},
    ]
    before = [dict(item) for item in spec]
    assert canonicalize_tensor_spec(spec) == [
        {"name": "x", "dtype": "float64", "shape": (None, "batch", 2)},
        {"name": "y", "dtype": "float32", "shape": []},
        {"name": "s", "dtype": "string", "shape": [None]},
    ]
    assert spec == before


# eval_utils: test data


def test_save_and_load_test_data(tmp_path):
    inputs = {"x": np.arange(4.0).reshape(2, 2), "ids": np.array(["a", "bc"])}
    expected = {"out": np.array([1.5, 2.5], np.float32)}
    save_test_data(tmp_path, inputs, expected)
    assert (tmp_path / "test_data.npz").is_file()
    data = load_test_data(tmp_path)
    assert data is not None
    assert sorted(data) == ["test_input", "test_output"]
    assert sorted(data["test_input"]) == ["ids", "x"]
    np.testing.assert_array_equal(data["test_input"]["x"], inputs["x"])
    assert data["test_input"]["ids"].tolist() == ["a", "bc"]
    assert data["test_input"]["ids"].dtype.kind == "U"
    assert data["test_output"]["out"].dtype == np.float32
    np.testing.assert_array_equal(data["test_output"]["out"], expected["out"])


def test_save_test_data_without_expected_output(tmp_path):
    save_test_data(tmp_path, {"x": np.zeros(2)}, None)
    data = load_test_data(tmp_path)
    assert data is not None
    assert data["test_output"] is None


def test_save_test_data_converts_lists_and_object_arrays_of_str(tmp_path):
    save_test_data(tmp_path, {"x": [[1, 2]], "s": np.array(["a", "b"], dtype=object)}, {"out": ["ok"]})
    data = load_test_data(tmp_path)
    assert data is not None
    assert data["test_input"]["x"].tolist() == [[1, 2]]
    assert data["test_input"]["s"].dtype.kind == "U"
    assert data["test_output"]["out"].tolist() == ["ok"]


def test_save_test_data_refuses_what_needs_pickle(tmp_path):
    with pytest.raises(PackageError) as info:
        save_test_data(tmp_path, {"x": np.array([{"a": 1}], dtype=object)}, None)
    assert str(info.value).startswith("Test tensor 'x' of dtype object cannot be stored: ")


def test_load_test_data_when_there_is_none(tmp_path):
    assert load_test_data(tmp_path) is None


def test_load_test_data_reads_the_originals_pickle(tmp_path):
    with open(tmp_path / "test_data.pkl", "wb") as f:
        pickle.dump({"test_input": {"x": [1.0, 2.0], "s": ["a"]}, "test_output": {"out": np.ones(2)}}, f)
    data = load_test_data(tmp_path)
    assert data is not None
    np.testing.assert_array_equal(data["test_input"]["x"], np.array([1.0, 2.0]))
    assert data["test_input"]["s"].dtype.kind == "U"
    np.testing.assert_array_equal(data["test_output"]["out"], np.ones(2))


def test_load_test_data_prefers_npz_over_pickle(tmp_path):
    with open(tmp_path / "test_data.pkl", "wb") as f:
        pickle.dump({"test_input": {"x": np.zeros(1)}, "test_output": None}, f)
    save_test_data(tmp_path, {"x": np.ones(1)}, None)
    data = load_test_data(tmp_path)
    assert data is not None
    assert data["test_input"]["x"].tolist() == [1.0]


@pytest.mark.parametrize("content", [b"not a pickle", pickle.dumps(["not", "a", "dict"])])
def test_unreadable_pickle_is_a_package_error(tmp_path, content):
    (tmp_path / "test_data.pkl").write_bytes(content)
    with pytest.raises(PackageError) as info:
        load_test_data(tmp_path)
    assert str(info.value).startswith(f"Cannot read test data {tmp_path / 'test_data.pkl'}: ")


def test_unreadable_npz_is_a_package_error(tmp_path):
    (tmp_path / "test_data.npz").write_bytes(b"not a zip")
    with pytest.raises(PackageError) as info:
        load_test_data(tmp_path)
    assert str(info.value).startswith(f"Cannot read test data {tmp_path / 'test_data.npz'}: ")


# eval_utils: checking outputs


def test_check_output_matches_expected_within_tolerance():
    check_output_matches_expected(
        {"out": np.array([1.0, 2.0], np.float32), "extra": np.zeros(1)},
        {"out": np.array([1.0, 2.0 + 1e-9])},
    )


def test_check_output_accepts_lists_and_strings():
    check_output_matches_expected(
        {"s": np.array(["a", "b"]), "n": np.array([1, 2])}, {"s": ["a", "b"], "n": [1, 2]}
    )
    check_output_matches_expected({"s": np.array(["a"], dtype=object)}, {"s": np.array(["a"])})


def test_check_output_value_mismatch():
    with pytest.raises(TestDataMismatch) as info:
        check_output_matches_expected({"out": np.array([1.0, 2.5])}, {"out": np.array([1.0, 2.0])})
    assert str(info.value) == "out does not match expected value! Expected [1. 2.], got [1.  2.5]"


def test_check_output_string_mismatch():
    with pytest.raises(TestDataMismatch) as info:
        check_output_matches_expected({"s": np.array(["a", "c"])}, {"s": ["a", "b"]})
    assert str(info.value) == "s does not match expected value! Expected ['a' 'b'], got ['a' 'c']"


def test_check_output_shape_mismatch():
    with pytest.raises(TestDataMismatch) as info:
        check_output_matches_expected({"out": np.zeros((2, 1))}, {"out": np.zeros(2)})
    assert str(info.value) == "out does not match expected value! Expected shape (2,), got shape (2, 1)"


def test_check_output_missing_output():
    with pytest.raises(TestDataMismatch) as info:
        check_output_matches_expected({"b": np.zeros(1), "a": np.zeros(1)}, {"out": np.zeros(1)})
    assert str(info.value) == (
        "out does not match expected value! The model returned no output 'out' (it returned: a, b)"
    )
    with pytest.raises(TestDataMismatch) as info:
        check_output_matches_expected({}, {"out": np.zeros(1)})
    assert str(info.value).endswith("(it returned: nothing)")


def test_check_output_long_arrays_are_abbreviated():
    with pytest.raises(TestDataMismatch) as info:
        check_output_matches_expected({"out": np.ones(1000)}, {"out": np.zeros(1000)})
    assert str(info.value) == (
        "out does not match expected value! Expected [0. 0. 0. ... 0. 0. 0.], got [1. 1. 1. ... 1. 1. 1.]"
    )


def test_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match=r"^out does not match expected value!"):
        check_output_matches_expected({"out": np.ones(1)}, {"out": np.zeros(1)})


# eval_utils: load_and_test_neuropod


@pytest.fixture(scope="module")
def placeholder(tmp_path_factory):
    path = tmp_path_factory.mktemp("placeholder") / "model.zip"
    create_placeholder_neuropod(
        neuropod_path=path,
        model_name="placeholder",
        input_spec=[
            {"name": "ids", "dtype": "string", "shape": ["batch"]},
            {"name": "x", "dtype": "float32", "shape": ["batch"]},
        ],
        output_spec=[{"name": "out", "dtype": "int64", "shape": ["batch", 2]}],
        seed=7,
    )
    return path


def test_load_and_test_neuropod_returns_the_outputs(placeholder):
    out = load_and_test_neuropod(placeholder, {"ids": ["a", "b", "c"]})
    assert sorted(out) == ["out"]
    assert out["out"].shape == (3, 2)
    assert out["out"].dtype == np.int64
    # a seeded placeholder repeats itself on every load, so its output is its expected output
    assert load_and_test_neuropod(placeholder, {"ids": ["a", "b", "c"]}, out)["out"].tolist() == (
        out["out"].tolist()
    )


def test_load_and_test_neuropod_checks_expected_output(placeholder):
    out = load_and_test_neuropod(placeholder, {"ids": np.array(["a"])})
    with pytest.raises(TestDataMismatch, match=r"^out does not match expected value! "):
        load_and_test_neuropod(placeholder, {"ids": np.array(["a"])}, {"out": out["out"] + 1})


def test_load_and_test_neuropod_passes_load_args(placeholder):
    with pytest.raises(ValidationError) as info:
        load_and_test_neuropod(
            placeholder, {"ids": np.array(["a"])}, neuropod_load_args={"require_all_inputs": True}
        )
    assert str(info.value) == "Tensor 'x' in the input spec is required, but was not provided"


def test_load_and_test_neuropod_ignores_unknown_keyword_arguments(placeholder):
    out = load_and_test_neuropod(placeholder, {"ids": np.array(["a"])}, use_native=True)
    assert out["out"].shape == (1, 2)
