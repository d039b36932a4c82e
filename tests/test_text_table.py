"""The one plain-text table printer of the commands and of ``evaluate``."""

from __future__ import annotations

from neuropod.batch.metrics import Evaluation
from neuropod.text_table import table


def test_columns_are_padded_and_two_spaces_apart_without_trailing_spaces():
    text = table([["a", "1"], ["long name", "22"]], ["name", "n"])
    assert text.splitlines() == ["  name       n", "  a          1", "  long name  22"]


def test_right_aligned_columns_and_no_indent():
    assert table([["x", "1,000"], ["y", "5"]], indent=0, right=[1]) == "x  1,000\ny      5"


def test_an_empty_table_is_empty_text():
    assert table([]) == ""


def test_an_evaluation_prints_models_as_right_aligned_columns():
    evaluation = Evaluation({"a": {"mae": 0.5}, "bb": {"mae": 12.25}}, {"a": 1000.0, "bb": 20.0}, 4)
    assert str(evaluation).splitlines() == [
        "metric      a     bb",
        "mae       0.5  12.25",
        "rows/s  1,000     20",
    ]
