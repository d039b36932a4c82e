"""Option declarations and their checks (``neuropod.options``), and the choice of a GPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from neuropod import OptionError
from neuropod.backends.devices import choose_gpu
from neuropod.options import (
    BOOLEAN,
    NoOptions,
    Options,
    declare,
    int_at_least,
    number_above,
    number_at_least,
    one_of,
    option,
    optional,
    split_options,
)


@dataclass(frozen=True)
class Sizes(Options):
    where = "sizes"

    count: int = option(1, int_at_least(1))
    delay: float | None = option(None, optional(number_above(0, "seconds")))


@dataclass(frozen=True)
class Flags(Options):
    verbose: bool = option(False, BOOLEAN)


@pytest.mark.parametrize(
    ("check", "good", "bad", "message"),
    [
        (int_at_least(1), [1, 7], [0, 1.0, True, "1", None], "an int >= 1"),
        (int_at_least(0, "(0: the default)"), [0], [-1], "an int >= 0 (0: the default)"),
        (number_above(0, "seconds"), [0.5, 2], [0, -1.0, False, "1"], "a number of seconds > 0"),
        (number_at_least(0), [0, 0.0], [-0.1, True], "a number >= 0"),
        (BOOLEAN, [True, False], [0, 1, "yes", None], "True or False"),
        (one_of(("a", "b")), ["a"], ["c", None], "one of 'a', 'b'"),
        (optional(int_at_least(1)), [None, 3], [0], "None or an int >= 1"),
    ],
)
def test_checks(check: Any, good: list[Any], bad: list[Any], message: str) -> None:
    for value in good:
        check("opt", value)
    for value in bad:
        with pytest.raises(OptionError) as info:
            check("opt", value)
        assert str(info.value) == f"opt must be {message}, got {value!r}"


def test_a_declaration_checks_its_values_when_made() -> None:
    assert Sizes() == Sizes(count=1, delay=None)
    with pytest.raises(OptionError, match=r"^count must be an int >= 1, got 0$"):
        Sizes(count=0)
    assert Sizes.names() == ("count", "delay")


def test_parse_names_the_unknown_options() -> None:
    assert Sizes.parse({"count": 2}) == Sizes(count=2)
    with pytest.raises(OptionError) as info:
        Sizes.parse({"cuont": 2})
    assert str(info.value) == (
        "load_neuropod() got unknown option(s) 'cuont' for sizes; accepted options: count, delay"
    )
    with pytest.raises(OptionError, match="for this model; accepted options: none"):
        NoOptions.parse({"x": 1})


def test_split_options_routes_what_was_given() -> None:
    routed = split_options({"verbose": True, "count": 3}, [Sizes, Flags], "here")
    assert routed == [{"count": 3}, {"verbose": True}]


def test_split_options_names_unknown_options_before_checking_values() -> None:
    with pytest.raises(OptionError) as info:
        split_options(
            {"count": 0, "colour": 1, "speed": 2},
            [Sizes, Flags],
            "platform 'p'",
            also_accepted=("visible_gpu",),
            hints={"speed": "speed applies with use_ope=True"},
        )
    assert str(info.value) == (
        "load_neuropod() got unknown option(s) 'colour', 'speed' for platform 'p'; accepted "
        "options: visible_gpu, count, delay, verbose (speed applies with use_ope=True)"
    )
    with pytest.raises(OptionError, match=r"^count must be an int >= 1, got 0$"):
        split_options({"count": 0}, [Sizes, Flags], "platform 'p'")


def test_declare_names_untyped_options() -> None:
    declaration = declare("PluginOptions", ["alpha", "beta"], "platform 'plugin'")
    assert declaration.names() == ("alpha", "beta")
    assert declaration(alpha=[1]).alpha == [1]  # values are the backend's to check
    with pytest.raises(OptionError, match="for platform 'plugin'; accepted options: alpha, beta"):
        declaration.parse({"gamma": 1})


# --- GPU choice -------------------------------------------------------------------------------


def test_the_cpu_needs_no_count() -> None:
    def never() -> int:
        raise AssertionError("counted")

    assert choose_gpu(None, never, "torch") is None


def test_a_visible_gpu() -> None:
    assert choose_gpu(1, lambda: 2, "torch") == 1
    assert choose_gpu(3, lambda: None, "onnxruntime") == 3  # cannot count: taken as given


def test_no_gpu_runs_on_the_cpu_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="neuropod.backends.devices"):
        assert choose_gpu(0, lambda: 0, "JAX") is None
    assert caplog.messages == ["visible_gpu=0 was requested but JAX sees no GPU; running on the CPU"]


def test_a_gpu_beyond_those_visible() -> None:
    with pytest.raises(OptionError) as info:
        choose_gpu(2, lambda: 2, "TensorFlow")
    assert str(info.value) == (
        "visible_gpu=2 was requested, but TensorFlow sees only 2 GPU(s) (numbered from 0)"
    )
