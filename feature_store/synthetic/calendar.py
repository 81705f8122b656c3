"""The shopping calendar: a seasonal daily density, inverse-CDF day draws and opening hours.

Days are integers counted from the first day of the history (day 0) to ``span_days - 1`` (the
end date). Timestamps are seconds since the epoch (numpy datetime64[s] arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from feature_store.synthetic.config import SynthConfig

SECONDS_PER_DAY = 86_400

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Calendar:
    #: first day of the history, as datetime64[D]
    start: np.datetime64
    #: relative purchase volume of each day (positive)
    density: FloatArray
    #: cumulative density, cdf[0] = 0, cdf[d + 1] = volume of days 0..d (normalized to 1)
    cdf: FloatArray
    #: cumulative weights of the opening hours
    hour_cdf: FloatArray
    opening_hour: int

    @property
    def days(self) -> int:
        return int(self.density.size)

    @property
    def start_seconds(self) -> int:
        return int(self.start.astype("datetime64[s]").astype(np.int64))

    def draw_days(self, rng: np.random.Generator, lo: IntArray, hi: IntArray) -> IntArray:
        """One day per entry, following the density restricted to ``lo..hi`` (inclusive)."""
        a, b = self.cdf[lo], self.cdf[hi + 1]
        u = a + rng.random(lo.size) * (b - a)
        day = np.searchsorted(self.cdf, u, side="right").astype(np.int64) - 1
        return np.clip(day, lo, hi)

    def draw_seconds_of_day(self, rng: np.random.Generator, n: int) -> IntArray:
        """Seconds after midnight within opening hours, busiest around noon and early evening."""
        hour = np.searchsorted(self.hour_cdf, rng.random(n), side="right").astype(np.int64)
        within = rng.integers(0, 3_600, size=n, dtype=np.int64)
        return (self.opening_hour + hour) * 3_600 + within


def build_calendar(cfg: SynthConfig) -> Calendar:
    start = np.datetime64(cfg.end_date - timedelta(days=cfg.span_days - 1), "D")
    days = start + np.arange(cfg.span_days)
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    day_of_month = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    density = (
        np.asarray(cfg.month_factors, dtype=np.float64)[month]
        * np.asarray(cfg.weekday_factors, dtype=np.float64)[weekday]
        * (1 + cfg.annual_growth) ** (np.arange(cfg.span_days) / 365.0)
    )
    density[(month == 11) & (day_of_month == 25)] *= cfg.christmas_day_factor
    cdf = np.concatenate(([0.0], np.cumsum(density)))
    cdf /= cdf[-1]
    hours = np.asarray(cfg.hour_weights, dtype=np.float64)
    hour_cdf = np.cumsum(hours) / hours.sum()
    hour_cdf[-1] = 1.0
    return Calendar(start, density, cdf, hour_cdf, cfg.opening_hour)
