"""The error of an invalid audience definition, and pydantic's errors turned into it.

:class:`DefinitionError` names the culprit by its dotted path in the document
(``filters.clv.top_percent``, ``holdout.percent``, ``seed.items[2]``; ``definition`` for the
document itself) and says what is wrong; :func:`definition_error` makes one of the
``ValidationError`` of the document model (engine.audience_document), listing every culprit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Final, get_args

from pydantic import BaseModel, ValidationError

from engine.errors import InvalidInputError


class DefinitionError(InvalidInputError):
    """An audience definition is invalid; ``field`` is the dotted path of the culprit
    (``"filters.tiers[1]"``, ``"size.top_n"``, ``"seed"``) and ``errors`` lists every culprit
    found (``{"field", "message"}``; the first is ``field``)."""

    def __init__(self, field: str, message: str, errors: Sequence[Mapping[str, str]] = ()) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors = [dict(e) for e in errors] or [{"field": field, "message": message}]


#: What a required section or value is, said when it is missing (or null).
_REQUIRED: Final = {
    "seed": "required: items, categories, item_tags or members",
    "size": "required: top_n, min_score and/or top_percent",
    "holdout.percent": "required: the share (%) of the audience kept out",
}
#: Why a range is what it is, said after what is wrong.
_WHY: Final = {"holdout.percent": "0 measures nothing and 100 contacts nobody"}
_OBJECT_TYPES: Final = ("model_type", "model_attributes_type", "dict_type")
_SHOWN_CHARS: Final = 40


def definition_error(exc: ValidationError, root: type[BaseModel]) -> DefinitionError:
    """``exc`` (from validating ``root``) as a :class:`DefinitionError` whose fields are the
    document's dotted paths (``filters.tiers[0]``) and whose messages say what is wrong."""
    errors = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        field = _path(loc) or "definition"
        errors.append({"field": field, "message": _message(error, field, loc, root)})
    return DefinitionError(errors[0]["field"], errors[0]["message"], errors)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(
    error: Mapping[str, Any], field: str, loc: tuple[int | str, ...], root: type[BaseModel]
) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return "unknown key; allowed here: " + ", ".join(_keys_at(root, loc[:-1]))
    if kind == "missing" or (value is None and field in _REQUIRED):
        return _REQUIRED.get(field, "required")
    if kind in _OBJECT_TYPES:
        return f"must be an object, got {type(value).__name__}"
    text = str(error["msg"])
    if text.startswith("Input should be "):
        text = "must be " + text.removeprefix("Input should be ")
    if value is None or isinstance(value, str | int | float | date):
        shown = repr(value)
        if len(shown) > _SHOWN_CHARS:
            shown = shown[: _SHOWN_CHARS - 3] + "..."
        text += f", got {shown}"
    return f"{text}: {_WHY[field]}" if field in _WHY else text


def _keys_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """The keys of the object at ``loc`` of a ``root`` document."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            break
        if isinstance(part, str):
            info = model.model_fields.get(part)
            model = None if info is None else _model_in(info.annotation)
    return tuple(model.model_fields) if model is not None else ()


def _model_in(annotation: object) -> type[BaseModel] | None:
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


__all__ = ["DefinitionError", "definition_error"]
