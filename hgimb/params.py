"""Declared parameters: every registry entry (dataset loader, model, remedy) lists its options as
:class:`Param` specs -- name, type, default, constraint, one-line help -- in the spirit of
scikit-learn's ``_parameter_constraints`` / ``validate_params``. :func:`validate` is the one place
values are checked: the registries call it before the loader/builder/remedy sees them, so those
receive complete, typed values; the ``--help`` listings come from :func:`describe`.

Values may arrive as strings (``--dataset-option features=false``, a quoted YAML value, a Python
caller): ``validate`` coerces them to the declared type. Checks that involve two parameters or
the data (``gaussian_step <= radius``, a sampling strategy naming classes) stay with the owner.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

from .errors import HgimbError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
NONE_WORDS = ("none", "null")


@dataclass(frozen=True)
class Range:
    """A numeric constraint: ``low``/``high`` bounds (None = open), inclusive unless stated; NaN and
    infinity are always refused."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value) -> bool:
        return math.isfinite(value) and not (
            (self.low is not None and (value <= self.low if self.low_open else value < self.low))
            or (self.high is not None and (value >= self.high if self.high_open else value > self.high)))

    def check(self, label: str, value) -> None:
        """Raise ``<label> must be <range>, got <value>`` (None passes: optional fields)."""
        if value is None:
            return
        if not math.isfinite(value):
            raise HgimbError(f"{label} must be a finite number, got {value}")
        if not self.contains(value):
            raise HgimbError(f"{label} must be {self.describe()}, got {value}")

    def describe(self) -> str:
        if self.high is None and self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.low is None and self.high is not None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        if self.low is None:
            return "finite"
        return (f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                f"{')' if self.high_open else ']'}")


@dataclass(frozen=True)
class Rule:
    """Any other constraint: ``test(value) -> bool`` on the coerced value, described by ``text``."""

    test: Callable[[Any], bool]
    text: str

    def contains(self, value) -> bool:
        return bool(self.test(value))

    def describe(self) -> str:
        return self.text


_TYPE_TEXT = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    ``type``: bool, int, float or str (None: any value, checked by ``constraint`` or the owner);
    ``constraint``: a :class:`Range` or :class:`Rule` on the typed value; ``choices``: the allowed
    strings (for a str parameter, all of them; for a number, words accepted besides numbers,
    e.g. focal's ``alpha=auto``); ``none``: None (``none``/``null``) is allowed."""

    name: str
    type: Optional[type]
    default: Any
    help: str = ""
    constraint: Any = None
    choices: Tuple[str, ...] = ()
    none: bool = False

    def expected(self) -> str:
        """What the parameter accepts, in words (``an integer >= 1``, ``none, auto or a number in (0, 1)``)."""
        words = ["none"] if self.none else []
        if self.type is str and self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.type is None or isinstance(self.constraint, Rule):  # a Rule describes the whole value
            text = self.constraint.describe() if self.constraint is not None else "any value"
        else:
            text = _TYPE_TEXT[self.type]
            if self.constraint is not None and self.type is not bool and self.constraint.describe() != "finite":
                text += " " + self.constraint.describe()
            words += list(self.choices)
        if words and self.type is bool:
            return ", ".join(words + ["true"]) + " or false"
        return ", ".join(words) + " or " + text if words else text

    def coerce(self, value: Any, where: str) -> Any:
        """The value as the declared type, or HgimbError ``<where>: option <name> must be ...``."""
        if self.none and (value is None or (isinstance(value, str) and (
                value.strip().lower() in NONE_WORDS or (not value.strip() and self.type is not str)))):
            return None
        if self.choices and isinstance(value, str) and value.strip() in self.choices:
            return value.strip()
        if self.choices and isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        try:
            out = _as_type(self.type, value)
        except (TypeError, ValueError):
            raise self.error(where, value) from None
        if self.type is str and self.choices:
            raise self.error(where, value)
        if self.constraint is not None and not self.constraint.contains(out):
            raise self.error(where, value)
        return out

    def error(self, where: str, value: Any) -> HgimbError:
        return HgimbError(f"{where} must be {self.expected()}, got {value!r}")

    def pair(self) -> str:
        """``name=default`` as a user would write it (``none``, ``true``)."""
        default = "none" if self.default is None else str(self.default).lower() if isinstance(self.default, bool) \
            else self.default
        return f"{self.name}={default}"

    def describe(self) -> str:
        """``name=default  help (accepts)`` for ``--help`` listings."""
        return f"{self.pair()}  {self.help}{' ' if self.help else ''}({self.expected()})"


def _as_type(kind, value):
    if kind is None:
        return value
    if kind is bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        text = str(value).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise ValueError(value)
    if kind is str:
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) and not hasattr(value, "__float__"):
        raise TypeError(value)
    number = float(value.strip().replace("_", "")) if isinstance(value, str) else float(value)  # "1e6", "1_000"
    if not math.isfinite(number):
        raise ValueError(value)
    if kind is int:
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    return number


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def defaults(spec: Iterable[Param]) -> Dict[str, Any]:
    """``{name: default}`` of a spec (declaration order)."""
    return {p.name: p.default for p in spec}


def validate(spec: Sequence[Param], values: Optional[Dict[str, Any]], owner: str, flag: str = "option",
             noun: str = "option") -> Dict[str, Any]:
    """Every parameter of ``spec``: the given ``values`` coerced and checked, defaults for the rest.

    ``owner`` names the entry in messages (``model 'rgcn'``), ``flag`` the way users set the values
    (``--model-option``). Unknown names raise ``unknown <flag> x for <owner>; valid <noun>s: ...``;
    a bad value raises ``<owner>: <noun> x must be <expected>, got <value>``."""
    values = dict(values or {})
    by_name = {p.name: p for p in spec}
    unknown = [k for k in values if k not in by_name]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(by_name), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise HgimbError(f"unknown {flag} {', '.join(sorted(unknown))} for {owner}{hint}; "
                         f"valid {noun}s: {', '.join(by_name) or 'none'}")
    out = {}
    for p in spec:
        out[p.name] = p.coerce(values[p.name], f"{owner}: {noun} {p.name}") if p.name in values else p.default
    return out


def describe(spec: Sequence[Param], indent: str = "      ") -> str:
    """One line per parameter (for ``--help``), empty when there are none."""
    return "\n".join(indent + p.describe() for p in spec)
