"""The one parser of date options (``YYYY-MM-DD``) of the `recsys` commands."""

from __future__ import annotations

from datetime import date, datetime
from typing import overload

import typer


@overload
def parse_date(value: str, option: str) -> date: ...
@overload
def parse_date(value: None, option: str) -> None: ...
def parse_date(value: str | None, option: str) -> date | None:
    """``value`` as a date (None stays None); a usage error naming ``option`` otherwise."""
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from None


__all__ = ["parse_date"]
