"""Typed configuration files: pydantic models of TOML tables, every error naming ``file: key``.

The feature policy (feature_store.policy), the training configuration (training.config) and the
tuning search spaces (training.tune_space) describe their tables with models derived from
:class:`ConfigModel`: frozen, unknown keys forbidden, and values taken as TOML wrote them
(strict: ``"3"`` is no integer and ``1`` is no ``true``; an integer is a fine number). Lists
are read into tuples with :data:`Items`; :data:`Text`, :data:`TomlDate`, :data:`Scalar` and
:func:`one_of` cover non-blank strings, dates, values of any simple type and choices known only
at run time.

:func:`validate` checks parsed TOML against such a model and turns pydantic's ValidationError
into one :class:`~feature_store.errors.ConfigError`, one line per problem, each naming the file,
the dotted path of the key and what is wrong::

    policy.toml: tiers.levels[1].min_spend: must be >= 0, got -5.0
    train.toml: weights.half_lif_days: unknown key (valid keys here: amount, bm25, ...)

A validator that compares fields raises :class:`ConfigValueError` with the path of the key at
fault below the model it checks, so its message names that key too.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainValidator,
    Strict,
    ValidationError,
)

from feature_store.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: A position in the file: table keys and array indexes, outermost first.
Loc = tuple[str | int, ...]


class ConfigModel(BaseModel):
    """A table of a configuration file: frozen, strict, and no key it does not declare."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ConfigValueError(ValueError):
    """A validator's finding about the key at ``at`` (a path below the model it checks; none:
    the model's own table)."""

    def __init__(self, message: str, *at: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.at: Loc = at

    def under(self, *prefix: str | int) -> ConfigValueError:
        """The same finding seen from a table ``prefix`` above."""
        return ConfigValueError(self.message, *prefix, *self.at)


#: A TOML array read into a tuple (its items stay strict).
Items = Annotated[tuple[T, ...], Strict(False)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


#: A string that is not empty or blank.
Text = Annotated[str, AfterValidator(_not_blank)]


def _date(value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"must be a date (YYYY-MM-DD), got {value!r}")


#: A TOML local date, or a string holding one (``2025-12-01`` or ``"2025-12-01"``).
TomlDate = Annotated[date, PlainValidator(_date)]


def _scalar(value: object) -> str | int | float | bool:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"must be a string, number or boolean, got {value!r}")
    return value


#: A string, number or boolean, kept as written (a model hyperparameter, a searched choice).
Scalar = Annotated[str | int | float | bool, PlainValidator(_scalar)]


def one_of(choices: Sequence[str]) -> AfterValidator:
    """A check that a string is one of ``choices`` (for choices known only at run time; a fixed
    set is a ``Literal``)."""

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return AfterValidator(check)


def validate(
    model: type[M],
    data: object,
    path: Path,
    *,
    context: Mapping[str, Any] | None = None,
    labels: Mapping[Loc, str] | None = None,
) -> M:
    """``data`` (parsed TOML) checked against ``model``; ConfigError naming ``path`` and every
    failing key. ``context`` reaches validators as ``info.context``; ``labels`` names places by
    something other than their path (``{("tags", 3): "tags[vip]"}``: a rule by its name)."""
    try:
        return model.model_validate(data, context=dict(context or {}))
    except ValidationError as exc:
        raise config_error(exc, path, model, labels) from None


def config_error(
    exc: ValidationError,
    path: Path,
    model: type[BaseModel],
    labels: Mapping[Loc, str] | None = None,
) -> ConfigError:
    """One ConfigError for every problem of ``exc``: ``<path>: <dotted key>: <what is wrong>``,
    a line each."""
    problems: list[tuple[Loc, str]] = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        error = err.get("ctx", {}).get("error")
        if isinstance(error, ConfigValueError):
            loc, message = loc + error.at, error.message
        else:
            message = _message(err, loc, model)
        problems.append((loc, message))
    # "must not be empty" says nothing more once an item of the list is named
    problems = [
        (loc, message)
        for loc, message in problems
        if not message.startswith("must not be empty")
        or not any(other[: len(loc)] == loc and other != loc for other, _ in problems)
    ]
    lines = [f"{path}: {where(loc, labels)}: {message}" for loc, message in problems]
    return ConfigError("\n".join(dict.fromkeys(lines)))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def where(loc: Loc, labels: Mapping[Loc, str] | None = None) -> str:
    """The dotted path of ``loc`` as TOML writes it (``tiers.levels[2].name``,
    ``params."blend.trending"``), from the longest prefix that has a label."""
    out, start = "", 0
    for end in range(len(loc), 0, -1):
        if labels and loc[:end] in labels:
            out, start = labels[loc[:end]], end
            break
    for part in loc[start:]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else f'"{part}"'
            out += f".{key}" if out else key
    return out or "<root>"


# -- messages --------------------------------------------------------------------------------


def _message(err: Any, loc: Loc, model: type[BaseModel]) -> str:
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx", {})
    got = f", got {err.get('input')!r}"
    if kind == "missing":
        return f"missing required {_describe(_annotation_at(model, loc))}"
    if kind == "extra_forbidden":
        parent = _unwrap(_annotation_at(model, loc[:-1]))
        known = sorted(_keys(parent)) if _is_model(parent) else []
        return f"unknown key (valid keys here: {', '.join(known) or 'none'})"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "literal_error":
        choices = typing.get_args(_unwrap(_annotation_at(model, loc)))
        listed = ", ".join(map(str, choices)) if choices else str(ctx.get("expected"))
        return f"{err.get('input')!r} is not one of {listed}"
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, name = bounds[kind]
        return f"must be {sign} {_number(ctx[name])}{got}"
    if kind == "too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"needs at least {ctx.get('min_length')} entries{got}"
    if kind in ("tuple_type", "list_type"):
        item = _item_type(_unwrap(_annotation_at(model, loc)))
        if _is_model(item):
            return f"must be an array of tables ([[...]]){got}"
        return f"must be a list{got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a table{got}"
    simple = {
        "int_type": "must be an integer",
        "float_type": "must be a number",
        "finite_number": "must be a finite number",
        "bool_type": "must be true or false",
        "string_type": "must be a string",
    }
    if kind in simple:
        return simple[kind] + got
    text = str(err["msg"])
    return text[:1].lower() + text[1:] + got


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- what the model declares at a place in the file ------------------------------------------


def _annotation_at(model: type[BaseModel], loc: Loc) -> object:
    """The declared type at ``loc`` (None where the models do not say)."""
    current: object = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            current = _item_type(current)
        elif _is_model(current):
            field = _fields_by_key(current).get(part)
            current = field.annotation if field is not None else None
        elif typing.get_origin(current) in (dict, Mapping):
            current = typing.get_args(current)[1]
        else:
            return None
    return current


def _fields_by_key(model: Any) -> dict[str, Any]:
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _keys(model: object) -> list[str]:
    return list(_fields_by_key(model))


def _is_model(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _item_type(tp: object) -> object:
    if typing.get_origin(tp) in (tuple, list):
        args = typing.get_args(tp)
        return _unwrap(args[0]) if args else None
    return None


def _unwrap(tp: object) -> object:
    """``tp`` without ``Annotated`` metadata and without ``| None``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _describe(tp: object) -> str:
    tp = _unwrap(tp)
    if _is_model(tp) or typing.get_origin(tp) in (dict, Mapping):
        return "table"
    if typing.get_origin(tp) in (tuple, list):
        return "array of tables ([[...]])" if _is_model(_item_type(tp)) else "list"
    if typing.get_origin(tp) is Literal:
        return f"value (one of {', '.join(map(str, typing.get_args(tp)))})"
    names: dict[object, str] = {
        bool: "boolean (true or false)",
        int: "integer",
        float: "number",
        str: "string",
        date: "date",
    }
    return names.get(tp, "value")


__all__ = [
    "ConfigModel",
    "ConfigValueError",
    "Items",
    "Loc",
    "Scalar",
    "Text",
    "TomlDate",
    "config_error",
    "one_of",
    "validate",
    "where",
]
