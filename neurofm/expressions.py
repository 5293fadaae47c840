"""Safe boolean expressions over table columns: a dataset card's ``valid_trials``.

A card says which trials to keep with a small expression over the trials table's columns::

    valid_trials: 'result == "R"'
    valid_trials: task_success == 1 and discard_trial == 0
    valid_trials: not is_outlier

The grammar is Python's, restricted to: column names, numbers, quoted strings, ``True`` /
``False``, the comparisons ``== != < <= > >=`` (chains too), ``and``, ``or``, ``not`` and
parentheses. The text is parsed with :mod:`ast` and every node is checked against that
whitelist; nothing is ever passed to ``eval``.

A bare column name is a truth test, allowed only on a boolean column or a numeric column
holding 0 and 1 (NWB often stores flags as uint8). On a string column it is an error: every
non-empty string is true, so ``valid_trials: result`` would silently keep every trial of a
``result`` column holding ``R``/``A``/``I``/``F``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from neurofm.errors import InvalidDataError, SpecError

__all__ = ["RowFilter", "parse_row_filter"]

_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_SYMBOL = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}

# What a user might write and what it is, for the error message.
_FORBIDDEN = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.BinOp: "arithmetic",
    ast.Lambda: "lambdas",
    ast.IfExp: "conditional expressions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.NamedExpr: "assignments",
}

_HELP = (
    "use column names, numbers, quoted strings, True/False, == != < <= > >=, and, or, not, "
    "parentheses"
)


class RowFilter:
    """A parsed, checked expression; call :meth:`evaluate` on a table's columns.

    Build it with :func:`parse_row_filter`.
    """

    def __init__(self, text: str, tree: ast.expr) -> None:
        self.text = text
        self._tree = tree

    def __repr__(self) -> str:
        return f"RowFilter({self.text!r})"

    @property
    def columns(self) -> list[str]:
        """Column names the expression reads, in order of first use."""
        names = [n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name)]
        return list(dict.fromkeys(names))

    def evaluate(self, columns: Mapping[str, np.ndarray], n: int, where: str = "") -> np.ndarray:
        """Which rows pass.

        Parameters
        ----------
        columns : mapping of str to ndarray
            The table's columns, ``n`` values each.
        n : int
            Number of rows.
        where : str
            What error messages start with (default ``valid_trials '<text>'``); give the
            file and the card's key, e.g. ``"x.nwb: fields.valid_trials 'result'"``.

        Returns
        -------
        ndarray of bool, shape (n,)

        Raises
        ------
        InvalidDataError
            A column that does not exist (the message lists those that do), a truth test on
            a string column or on a numeric column with values other than 0/1, or a comparison
            of a string column with a number (or a numeric column with a string).
        """
        ctx = _Context(columns, n, where or f"valid_trials {self.text!r}")
        return ctx.truth(self._tree)


def parse_row_filter(text: str) -> RowFilter:
    """Parse ``text`` into a :class:`RowFilter`, refusing anything outside the grammar.

    Raises
    ------
    SpecError
        Not valid syntax, or a construct outside the whitelist (function calls, attributes,
        arithmetic...): the message says which and what is allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"expected a non-empty expression over trial columns ({_HELP})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"not a valid expression ({exc.msg}); {_HELP}") from None
    _check(tree.body)
    return RowFilter(text.strip(), tree.body)


def _check(node: ast.AST) -> None:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And | ast.Or):
        for value in node.values:
            _check(value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise SpecError(
                    f"operator {type(op).__name__}: not allowed in an expression; {_HELP}"
                )
        for side in (node.left, *node.comparators):
            _check_operand(side)
    elif isinstance(node, ast.Name):
        pass
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        pass
    else:
        _forbidden(node)


def _check_operand(node: ast.AST) -> None:
    if isinstance(node, ast.Name):
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, bool | int | float | str):
        return
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        return  # a negative number
    if isinstance(node, ast.BoolOp | ast.UnaryOp | ast.Compare):
        raise SpecError(
            "a comparison operand must be a column, a number or a string; put and/or/not "
            f"around whole comparisons; {_HELP}"
        )
    _forbidden(node)


def _forbidden(node: ast.AST) -> None:
    what = _FORBIDDEN.get(type(node), type(node).__name__)
    if isinstance(node, ast.Constant):
        what = f"the constant {node.value!r}"
    raise SpecError(f"{what}: not allowed in an expression; {_HELP}")


class _Context:
    """Evaluates a checked tree over numpy columns."""

    def __init__(self, columns: Mapping[str, np.ndarray], n: int, where: str) -> None:
        self.columns, self.n, self.where = columns, n, where

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise InvalidDataError(
                f"{self.where}: no column {name!r} (columns: {', '.join(sorted(self.columns))})"
            )
        values = np.asarray(self.columns[name])
        if values.ndim != 1 or len(values) != self.n:
            raise InvalidDataError(f"{self.where}: column {name!r} is not one value per row")
        return values

    def truth(self, node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            parts = [self.truth(v) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = parts[0]
            for part in parts[1:]:
                out = combine(out, part)
            return out
        if isinstance(node, ast.UnaryOp):  # `not`, the only unary operator _check lets through
            return np.logical_not(self.truth(node.operand))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Constant):
            return np.full(self.n, bool(node.value))
        return self.bare(node.id)  # an ast.Name

    def bare(self, name: str) -> np.ndarray:
        values = self.column(name)
        if values.dtype == bool:
            return values
        if _is_text(values):
            shown = ", ".join(repr(v) for v in list(dict.fromkeys(values.tolist()))[:4])
            raise InvalidDataError(
                f"{self.where}: column {name!r} holds strings ({shown}), and a bare name would "
                f'keep every non-empty one; compare it instead, e.g. {name} == "..."'
            )
        if values.dtype.kind in "iuf":
            finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
            if np.isin(finite, (0, 1)).all():
                return values == 1  # NaN -> False
            raise InvalidDataError(
                f"{self.where}: column {name!r} is numeric with values other than 0 and 1 "
                f"(e.g. {finite[~np.isin(finite, (0, 1))][0].item()!r}); compare it instead, "
                f"e.g. {name} == 1"
            )
        raise InvalidDataError(
            f"{self.where}: column {name!r} (dtype {values.dtype}) cannot be tested for truth"
        )

    def operand(self, node: ast.AST) -> tuple[Any, str, str]:
        """(value, 'text' | 'number', description) of a comparison operand."""
        if isinstance(node, ast.Name):
            values = self.column(node.id)
            if values.dtype == bool:
                return values, "number", f"boolean column {node.id!r}"
            if _is_text(values):
                return values.astype(str), "text", f"string column {node.id!r}"
            if values.dtype.kind in "iuf":
                return values, "number", f"numeric column {node.id!r}"
            raise InvalidDataError(
                f"{self.where}: column {node.id!r} (dtype {values.dtype}) cannot be compared"
            )
        if isinstance(node, ast.UnaryOp):  # a signed number
            value = node.operand.value  # type: ignore[attr-defined]
            value = -value if isinstance(node.op, ast.USub) else value
            return value, "number", f"the number {value!r}"
        value = node.value  # type: ignore[attr-defined]
        if isinstance(value, str):
            return value, "text", f"the string {value!r}"
        return value, "number", f"the number {value!r}"

    def compare(self, node: ast.Compare) -> np.ndarray:
        out = np.ones(self.n, dtype=bool)
        left = self.operand(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.operand(right_node)
            if left[1] != right[1]:
                raise InvalidDataError(
                    f"{self.where}: compares {left[2]} with {right[2]}, which is never equal; "
                    "compare strings with quoted strings and numbers with numbers"
                )
            if left[1] == "text" and type(op) not in (ast.Eq, ast.NotEq):
                raise InvalidDataError(
                    f"{self.where}: {_SYMBOL[type(op)]} on {left[2]} and {right[2]}: strings "
                    "can only be compared with == and !="
                )
            with np.errstate(invalid="ignore"):
                result = _COMPARE[type(op)](left[0], right[0])
            out &= np.broadcast_to(np.asarray(result, dtype=bool), (self.n,))
            left = right
        return out


def _is_text(values: np.ndarray) -> bool:
    if values.dtype.kind in "US":
        return True
    if values.dtype == object:
        return any(isinstance(v, str | bytes) for v in values.tolist())
    return False
