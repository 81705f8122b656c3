"""Three time windows and the refit date: where every model choice is made, where the chosen
model is scored once, and what the shipped model learns from.

    ... training ... | validation | test | (ship: refit on everything before as_of)
                     ^           ^      ^
          validation.cutoff   cutoff  test_end <= as_of

* **validation**: the last ``validation_days`` before the test cutoff (default: as long as
  the test window). The automatic mode (training/search.py) fits on purchases before it and
  chooses everything by the metrics on it.
* **test**: ``[cutoff, test_end)``, scored once with the chosen configuration, for the report
  and the promotion gate. Nothing is chosen on it.
* **refit**: the chosen configuration learns again from every purchase before ``as_of`` (the
  day after the last purchase, or the configured date), with features as of that date; that
  model is bundled, registered and served.

Each window is a :class:`~training.data.Split`: training sees ``ts < cutoff``, the evaluated
window is ``[cutoff, test_end)``. The refit's split has an empty window (``cutoff ==
test_end == as_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from feature_store.errors import DataError
from feature_store.offline import cutoff as as_of_instant
from feature_store.schema import Col
from training.config import SplitConfig
from training.data import Split


@dataclass(frozen=True, slots=True)
class Windows:
    """The validation and test splits and the refit instant."""

    validation: Split
    test: Split
    #: the refit learns from purchases strictly before this instant
    as_of: datetime

    @property
    def refit(self) -> Split:
        """The refit's split: everything before ``as_of``, no evaluated window."""
        return Split(cutoff=self.as_of, test_end=self.as_of)

    def describe(self) -> dict[str, str]:
        """The windows as inclusive ISO dates (what the manifest and MLflow record)."""
        return {
            "validation_start": self.validation.cutoff_date,
            "validation_last_day": self.validation.test_last_day,
            "test_start": self.test.cutoff_date,
            "test_last_day": self.test.test_last_day,
            "refit_as_of": self.as_of.date().isoformat(),
        }


def resolve_windows(config: SplitConfig, purchases: pl.DataFrame) -> Windows:
    """The windows of ``config`` on ``purchases`` (see the module docstring).

    Raises :class:`DataError` when the data has no purchases, or when the configured dates
    leave no training data before the validation window.
    """
    test = resolve_split(config, purchases)
    as_of = (
        as_of_instant(config.as_of)
        if config.as_of is not None
        else max(_day_after_last(purchases), test.test_end)
    )
    if test.test_end > as_of:
        raise DataError(
            f"the test window ends {test.test_last_day}, after the refit date "
            f"{as_of.date().isoformat()} (--as-of); choose an earlier cutoff or a later --as-of"
        )
    days = config.validation_days or max(1, (test.test_end - test.cutoff).days)
    validation = Split(cutoff=test.cutoff - timedelta(days=days), test_end=test.cutoff)
    first = purchases.get_column(Col.TS).min() if purchases.height else None
    if isinstance(first, datetime) and validation.cutoff <= first:
        raise DataError(
            f"the validation window starts {validation.cutoff_date}, on or before the first "
            f"purchase ({first.date().isoformat()}): nothing to train on before it; choose a "
            "later cutoff or a shorter test_days / validation_days"
        )
    return Windows(validation=validation, test=test, as_of=as_of)


def resolve_split(config: SplitConfig, purchases: pl.DataFrame) -> Split:
    """The test split: from ``cutoff`` through ``test_end`` (inclusive) or for ``test_days``;
    without a cutoff, the last ``test_days`` days before ``as_of`` (default: the data's end)."""
    if config.cutoff is not None:
        cut = as_of_instant(config.cutoff)
        if config.test_end is not None:
            end = as_of_instant(config.test_end) + timedelta(days=1)
        else:
            end = cut + timedelta(days=config.test_days)
        return Split(cutoff=cut, test_end=end)
    end = as_of_instant(config.as_of) if config.as_of is not None else _day_after_last(purchases)
    return Split(cutoff=end - timedelta(days=config.test_days), test_end=end)


def _day_after_last(purchases: pl.DataFrame) -> datetime:
    last = purchases.get_column(Col.TS).max() if purchases.height else None
    if not isinstance(last, datetime):
        raise DataError("the dataset has no purchases: cannot place a temporal split")
    return as_of_instant(last.date() + timedelta(days=1))


__all__ = ["Windows", "resolve_split", "resolve_windows"]
