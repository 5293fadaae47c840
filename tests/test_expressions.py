"""valid_trials expressions: parsed without eval, whitelisted, and strict about truthiness."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.errors import InvalidDataError, SpecError
from neurofm.expressions import parse_row_filter

# Columns as the NWB reader returns them: strings as objects, NWB flags as uint8.
COLUMNS = {
    "result": np.array(["R", "A", "R", "F", "I"], dtype=object),
    "task_success": np.array([1, 0, 1, 1, 0], dtype=np.uint8),
    "discard_trial": np.array([0, 0, 1, 0, 0], dtype=np.uint8),
    "is_outlier": np.array([False, True, False, False, False]),
    "tp": np.array([0.5, np.nan, 1.0, 2.0, -0.5]),
    "is_short": np.array([1.0, 0.0, np.nan, 1.0, 0.0]),
}


def keep(text: str) -> list[bool]:
    return parse_row_filter(text).evaluate(COLUMNS, 5).tolist()


@pytest.mark.parametrize(
    "text, expected",
    [
        ('result == "R"', [True, False, True, False, False]),
        ("result == 'R'", [True, False, True, False, False]),
        ('result != "R"', [False, True, False, True, True]),
        ("task_success == 1 and discard_trial == 0", [True, False, False, True, False]),
        ("not is_outlier", [True, False, True, True, True]),
        ("is_outlier == False", [True, False, True, True, True]),
        ("task_success", [True, False, True, True, False]),  # a 0/1 uint8 flag
        ("is_short", [True, False, False, True, False]),  # 0/1 floats, NaN is not true
        ("tp > 0.6 or result == 'F'", [False, False, True, True, False]),
        ("0 <= tp < 1.5", [True, False, True, False, False]),  # NaN compares false
        ("tp > -1 and not (result == 'A' or result == 'I')", [True, False, True, True, False]),
        ("True", [True] * 5),
    ],
)
def test_expressions_select_the_rows_they_say(text, expected):
    assert keep(text) == expected


def test_columns_read_are_listed():
    assert parse_row_filter("task_success == 1 and not is_outlier").columns == [
        "task_success",
        "is_outlier",
    ]


@pytest.mark.parametrize(
    "text, words",
    [
        ("__import__('os').system('true')", "function calls"),
        ("open('x')", "function calls"),
        ("result.upper() == 'R'", "function calls"),
        ("trials.result == 'R'", "attribute access"),
        ("tp + 1 > 2", "arithmetic"),
        ("result[0] == 'R'", "indexing"),
        ("result in ('R', 'A')", "operator In"),
        ("lambda: 1", "lambdas"),
        ("1", "the constant 1"),
        ("'R'", "the constant 'R'"),
        ("(tp > 1) == True", "comparison operand"),
        ("result ==", "not a valid expression"),
        ("", "non-empty expression"),
    ],
)
def test_anything_outside_the_grammar_is_refused_when_parsed(text, words):
    with pytest.raises(SpecError, match=words):
        parse_row_filter(text)


def test_truth_test_on_a_string_column_is_an_error_naming_it():
    # Area2_Bump: `valid_trials: result` would keep every trial (non-empty strings are true).
    with pytest.raises(InvalidDataError) as err:
        parse_row_filter("result").evaluate(COLUMNS, 5, "x.nwb: fields.valid_trials 'result'")
    text = str(err.value)
    assert text.startswith("x.nwb: fields.valid_trials 'result': column 'result' holds strings")
    assert "'R', 'A', 'F', 'I'" in text and 'result == "..."' in text
    with pytest.raises(InvalidDataError, match="column 'result' holds strings"):
        keep("not result")


@pytest.mark.parametrize(
    "text, words",
    [
        ("tp", "column 'tp' is numeric with values other than 0 and 1 \\(e.g. 0.5\\)"),
        ("nope == 1", "no column 'nope' \\(columns: discard_trial, is_outlier, is_short, result"),
        ("result == 1", "compares string column 'result' with the number 1"),
        ("tp == 'a'", "compares numeric column 'tp' with the string 'a'"),
        ("result < 'R'", "strings can only be compared with == and !="),
    ],
)
def test_evaluation_errors_name_the_column(text, words):
    with pytest.raises(InvalidDataError, match=words):
        keep(text)
