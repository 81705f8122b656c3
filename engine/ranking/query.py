"""The per-request fields of a "for you" list, parsed once by every caller: the service's route
and its fast path (query string), ``recsys recommend`` (options) and the MLflow pyfunc (params).

:class:`ListQuery` is the one model; :func:`request_rules` turns its item and category names
into the kernel's dense ids (:class:`engine.ranking.lists.RequestRules`, which the kernel merges
into the rules without knowing what they are). A new per-request rule touches three places:
its field here (and in :func:`request_rules`), its step in :mod:`engine.ranking.lists`, and its
test.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from engine.ids import IdMap
from engine.ranking.catalog import ItemCatalog
from engine.ranking.lists import Promotion, RequestRules
from engine.ranking.request import Purchased

MAX_K: Final = 200
DEFAULT_K: Final = 10
MAX_ID_LENGTH: Final = 128
#: at most this many characters in ``exclude`` or ``promote`` (200 ids of 128 characters)
MAX_LIST_LENGTH: Final = 200 * (MAX_ID_LENGTH + 1) - 1
DEFAULT_PROMOTE_SHARE: Final = 0.2

_INT: Final = re.compile("-?[0-9]+")
_SHARE: Final = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ID_LIST: Final = rf"^[^,]{{1,{MAX_ID_LENGTH}}}(,[^,]{{1,{MAX_ID_LENGTH}}})*$"


def _whole(value: object) -> object:
    """A whole number: an int, or ASCII digits in text (not ``١٢``, ``²``, ``1_000``, `` 5``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.fullmatch(value):
        return value
    raise PydanticCustomError("int_parsing", "must be a whole number written in ASCII digits")


def _share(value: object) -> object:
    """A number: a float or int, or ASCII decimal text (not ``nan``, ``inf``, ``٠.٥``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _SHARE.fullmatch(value):
        return value
    raise PydanticCustomError("float_parsing", "must be a decimal number written in ASCII digits")


#: Put after the constraints: ``Annotated[int, Field(ge=1), ASCII_INT]``.
ASCII_INT: Final = BeforeValidator(_whole)

IdList = Annotated[
    str | None,
    Field(
        default=None,
        pattern=_ID_LIST,
        max_length=MAX_LIST_LENGTH,
        description=f"Comma-separated item ids of 1-{MAX_ID_LENGTH} characters "
        f"(at most {MAX_LIST_LENGTH:,} characters in all).",
    ),
]


#: the fields every plain request may set; any other one is a per-request rule
_BASIC_FIELDS: Final = frozenset({"k", "category", "exclude_purchased"})


class ListQuery(BaseModel):
    """What a caller may ask of a member's list, beyond who the member is."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    k: Annotated[
        int, Field(ge=1, le=MAX_K, description="How many items to return (1-200)."), ASCII_INT
    ] = DEFAULT_K
    category: Annotated[
        str | None,
        Field(min_length=1, max_length=MAX_ID_LENGTH, description="Only items of this category."),
    ] = None
    exclude_purchased: Annotated[
        bool | None,
        Field(
            description=(
                "true: never recommend items the member bought; false: buy-again allowed, even "
                "items just bought; absent: the service's policy (RECSYS_PURCHASED_POLICY)."
            )
        ),
    ] = None
    exclude: Annotated[IdList, Field(description="Item ids never to return (`exclude=ID,ID`).")]
    promote: Annotated[
        IdList,
        Field(description="Promoted item ids: they get `promote_share` of the slots."),
    ]
    promote_category: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            description="Promote the items of this category: they get `promote_share` of the slots.",
        ),
    ] = None
    promote_share: Annotated[
        float,
        Field(
            gt=0,
            le=1,
            allow_inf_nan=False,
            description="Share of the k slots given to promoted items (ceil(share * k)); "
            "placed by score among them.",
        ),
        BeforeValidator(_share),
    ] = DEFAULT_PROMOTE_SHARE

    def policy(self, default: Purchased | str) -> Purchased:
        """The purchased-items policy: ``exclude_purchased`` when given, else ``default``."""
        if self.exclude_purchased is None:
            return Purchased(default)
        return Purchased.EXCLUDE if self.exclude_purchased else Purchased.KEEP

    def cache_key(self) -> str:
        """Every field but the policy (which the caller resolves and adds), as one text: the
        response cache's variant, so a new field can never share a cached answer."""
        if not (self.category or self.rules_beyond_k):
            return str(self.k)  # the common request, without building a dump
        fields = self.model_dump(exclude={"exclude_purchased"})
        return "|".join(f"{name}={value}" for name, value in fields.items() if value is not None)

    @property
    def rules_beyond_k(self) -> bool:
        """Whether the query sets any field beyond ``k``, ``category`` and the policy (an
        exclude list, a promotion, or any rule added later)."""
        return bool(self.model_fields_set - _BASIC_FIELDS)

    @property
    def promoting(self) -> bool:
        return self.promote is not None or self.promote_category is not None


def _ids(text: str | None) -> list[str]:
    return [] if text is None else text.split(",")


def request_rules(query: ListQuery, item_ids: IdMap, catalog: ItemCatalog) -> RequestRules:
    """The query's exclude list and promotion in the model's dense ids (ids the model does not
    know are ignored: they cannot be recommended anyway)."""
    exclude = item_ids.lookup(_ids(query.exclude)) if query.exclude else np.zeros(0, np.int64)
    promotion = None
    if query.promoting:
        promoted = [item_ids.lookup(_ids(query.promote))] if query.promote else []
        if query.promote_category is not None:
            code = catalog.category_code(query.promote_category)
            if code is not None:
                promoted.append(np.flatnonzero(catalog.category_codes == code))
        items = np.unique(np.concatenate(promoted)) if promoted else np.zeros(0, np.int64)
        promotion = Promotion(items[items >= 0].astype(np.int64), query.promote_share)
    return RequestRules(exclude[exclude >= 0].astype(np.int64), promotion)


__all__ = [
    "ASCII_INT",
    "DEFAULT_K",
    "MAX_ID_LENGTH",
    "MAX_K",
    "MAX_LIST_LENGTH",
    "ListQuery",
    "request_rules",
]
