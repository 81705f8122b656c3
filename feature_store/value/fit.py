"""Fit the member-value model: BG/NBD for repeat buying, Gamma-Gamma for the value of a purchase.

Both are fitted with PyMC-Marketing (``BetaGeoModel``, ``GammaGammaModel``) by MAP with flat
(``HalfFlat``) priors, which is maximum likelihood:

- BG/NBD (Fader, Hardie & Lee 2005): while alive a member buys on a Poisson schedule with rate
  lambda ~ Gamma(shape r, rate alpha) per model time unit; after each repeat purchase they drop
  out with probability p ~ Beta(a, b). Fitted on (x, t_x, T) of every member with at least one
  purchase day (members without one have nothing to fit and get nulls at scoring).
- Gamma-Gamma (Fader & Hardie 2013): a purchase day's value is Gamma(p, nu) with the member's
  nu ~ Gamma(q, v); fitted on the members with a positive mean repeat-day value (their repeat
  day count and that mean). The mean value of a day, ``v p / (q - 1)``, is finite only if q > 1.

The model time unit is ``unit_days`` days (7: weeks, as in the papers); alpha is per unit, r, a,
b, p, q, v have no unit (v is in currency). Members may be subsampled (``max_members``, seeded)
to bound the fit time; at 810k members the full fit takes about 12 s on two cores, so the
default is to use everyone.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import betaln, gammaln

from feature_store.errors import FeatureStoreError
from feature_store.value.summary import ModelInputs, model_inputs, spend_frequency

if TYPE_CHECKING:
    import pandas as pd

FloatArray = npt.NDArray[np.float64]

#: Fewest members with a purchase day the BG/NBD fit accepts.
MIN_MEMBERS: Final[int] = 20
#: Fewest members with a usable repeat spend the Gamma-Gamma fit accepts.
MIN_REPEATERS: Final[int] = 10


class ValueModelError(FeatureStoreError):
    """The member-value model cannot be fitted on these data (the message says why)."""


class ValueParams(BaseModel):
    """Fitted BG/NBD + Gamma-Gamma parameters and how they were obtained."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: BG/NBD: shape and rate (per model time unit) of the purchase-rate gamma distribution
    r: float = Field(gt=0)
    alpha: float = Field(gt=0)
    #: BG/NBD: beta distribution of the dropout probability after each repeat purchase
    a: float = Field(gt=0)
    b: float = Field(gt=0)
    #: Gamma-Gamma: shape of a day's value, shape and scale (currency) of its rate's gamma
    p: float = Field(gt=0)
    q: float = Field(gt=1)
    v: float = Field(gt=0)
    #: the model time unit in days (alpha is per unit)
    unit_days: float = Field(default=7.0, gt=0)
    #: members in the BG/NBD fit; members (x > 0, positive mean value) in the Gamma-Gamma fit
    n_members: int = Field(ge=0)
    n_repeaters: int = Field(ge=0)
    #: members with a purchase day before the subsample (None: everyone was fitted)
    subsampled_from: int | None = None
    #: the statistics' as_of (exclusive)
    fitted_at_as_of: date | None = None
    #: total log-likelihoods at the fitted parameters
    bgnbd_log_likelihood: float = 0.0
    gamma_gamma_log_likelihood: float = 0.0
    fit_seconds: float = 0.0

    @property
    def mean_spend_per_day(self) -> float:
        """Population mean value of a purchase day, ``v p / (q - 1)``."""
        return self.v * self.p / (self.q - 1.0)


@contextmanager
def quiet_pymc() -> Iterator[None]:
    """Silence the warnings PyMC, PyTensor and ArviZ raise while importing and fitting (ArviZ's
    daily "major refactor" FutureWarning, pandas/xarray deprecations inside them): noise to our
    users, and errors under pytest's ``filterwarnings = error``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """Per-member BG/NBD log-likelihood (FHL 2005, eq. 6), times in model units."""
    x = np.asarray(x, dtype=np.float64)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    term1 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        term2 = np.where(
            x > 0,
            betaln(a + 1.0, b + x - 1.0) - betaln(a, b) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return np.asarray(common + np.logaddexp(term1, term2), dtype=np.float64)


def gamma_gamma_log_likelihood(
    p: float, q: float, v: float, k: FloatArray, m: FloatArray
) -> FloatArray:
    """Per-member Gamma-Gamma log-likelihood of the mean value m of k > 0 days (FH 2013, eq. 1a)."""
    px = p * k
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(k)
        - (px + q) * np.log(v + k * m)
    )
    return np.asarray(ll, dtype=np.float64)


#: MAP results of this process by (model, digest of the data): the same data (a snapshot built
#: again, a test fixture reused) gives the same optimum, so it is not fitted twice.
_FITTED: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
_FITTED_KEEP: Final[int] = 16


def _digest(data: pd.DataFrame) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in data.columns:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(data[name].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def _map_fit(kind: str, data: pd.DataFrame) -> dict[str, float]:
    """MAP (= maximum likelihood with flat priors) of a PyMC-Marketing CLV model (remembered
    per process for the same data, see :data:`_FITTED`)."""
    key = (kind, _digest(data))
    if key in _FITTED:
        _FITTED.move_to_end(key)
        return dict(_FITTED[key])
    fitted = _pymc_map(kind, data)
    _FITTED[key] = dict(fitted)
    while len(_FITTED) > _FITTED_KEEP:
        _FITTED.popitem(last=False)
    return fitted


def _pymc_map(kind: str, data: pd.DataFrame) -> dict[str, float]:
    with quiet_pymc():
        from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
        from pymc_marketing.prior import Prior  # type: ignore[attr-defined]

        names = ["r", "alpha", "a", "b"] if kind == "bgnbd" else ["p", "q", "v"]
        config = {name: Prior("HalfFlat") for name in names}
        model = (
            BetaGeoModel(model_config=config)
            if kind == "bgnbd"
            else GammaGammaModel(model_config=config)
        )
        model.fit(data=data, method="map", progressbar=False)
        result = model.fit_result
        return {name: float(result[name].values.reshape(-1)[0]) for name in names}


def _check_finite(values: dict[str, float], what: str) -> None:
    bad = {k: v for k, v in values.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise ValueModelError(
            f"the {what} fit did not converge to positive finite parameters ({bad}); "
            "the data may be too small or degenerate"
        )


def _sample(n: int, max_members: int | None, seed: int) -> npt.NDArray[np.intp] | None:
    if max_members is None or n <= max_members:
        return None
    if max_members < MIN_MEMBERS:
        raise ValueError(f"max_members must be >= {MIN_MEMBERS}, got {max_members}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_members, replace=False))


def fit_inputs(
    inputs: ModelInputs,
    as_of: date | None,
    unit_days: float = 7.0,
    *,
    max_members: int | None = None,
    seed: int = 0,
    min_members: int = MIN_MEMBERS,
    min_repeaters: int = MIN_REPEATERS,
) -> ValueParams:
    """:func:`fit_value_model` on already derived model inputs (days)."""
    import pandas as pd

    started = time.perf_counter()
    if unit_days <= 0:
        raise ValueError(f"unit_days must be > 0, got {unit_days}")
    has = np.isfinite(inputs.frequency) & np.isfinite(inputs.age_days)
    x = inputs.frequency[has]
    t_x = inputs.recency_days[has] / unit_days
    T = inputs.age_days[has] / unit_days
    monetary = inputs.monetary[has]
    available = int(x.size)
    if available < min_members:
        raise ValueModelError(
            f"only {available} member(s) have a purchase day; the value model needs at least "
            f"{min_members}"
        )
    picked = _sample(available, max_members, seed)
    if picked is not None:
        x, t_x, T, monetary = x[picked], t_x[picked], T[picked], monetary[picked]
    if not np.any(x > 0):
        raise ValueModelError(
            "no member bought on two different days: the BG/NBD purchase rate and dropout "
            "cannot be estimated without repeat purchases"
        )
    k = spend_frequency(x, monetary)
    spenders = k > 0
    n_repeaters = int(spenders.sum())
    if n_repeaters < min_repeaters:
        raise ValueModelError(
            f"only {n_repeaters} member(s) have repeat purchase days with a positive mean value; "
            f"the Gamma-Gamma spend model needs at least {min_repeaters}"
        )

    ids = np.arange(x.size)
    # Gamma-Gamma first: the smaller fit, and the one that can fail for a structural reason
    gg_data = pd.DataFrame(
        {
            "customer_id": ids[spenders],
            "frequency": k[spenders],
            "monetary_value": monetary[spenders],
        }
    )
    gg = _map_fit("gamma_gamma", gg_data)
    _check_finite(gg, "Gamma-Gamma")
    if gg["q"] <= 1.0:
        raise ValueModelError(
            f"the Gamma-Gamma fit gives q = {gg['q']:.4g} <= 1: the mean value of a purchase "
            "day v p / (q - 1) is not finite (spend per day is too heavy-tailed for this model)"
        )
    bg = _map_fit(
        "bgnbd", pd.DataFrame({"customer_id": ids, "frequency": x, "recency": t_x, "T": T})
    )
    _check_finite(bg, "BG/NBD")
    ll_bg = float(bgnbd_log_likelihood(bg["r"], bg["alpha"], bg["a"], bg["b"], x, t_x, T).sum())
    ll_gg = float(
        gamma_gamma_log_likelihood(gg["p"], gg["q"], gg["v"], k[spenders], monetary[spenders]).sum()
    )
    return ValueParams(
        **bg,
        **gg,
        unit_days=unit_days,
        n_members=int(x.size),
        n_repeaters=n_repeaters,
        subsampled_from=available if picked is not None else None,
        fitted_at_as_of=as_of,
        bgnbd_log_likelihood=ll_bg,
        gamma_gamma_log_likelihood=ll_gg,
        fit_seconds=time.perf_counter() - started,
    )


def fit_value_model(
    stats: pl.DataFrame,
    as_of: date,
    unit_days: float = 7.0,
    *,
    max_members: int | None = None,
    seed: int = 0,
    min_members: int = MIN_MEMBERS,
    min_repeaters: int = MIN_REPEATERS,
) -> ValueParams:
    """Fit BG/NBD + Gamma-Gamma on a :func:`~feature_store.value.summary.summaries` frame
    computed as of ``as_of`` (exclusive).

    ``max_members``: fit on a random subsample of that many members (``seed``) when there are
    more. Raises ValueModelError when the data cannot identify the model: fewer than
    ``min_members`` members with a purchase day, no repeat purchase, fewer than
    ``min_repeaters`` members with a positive mean repeat-day value, a non-finite optimum, or a
    Gamma-Gamma q <= 1 (no finite mean spend).
    """
    return fit_inputs(
        model_inputs(stats, as_of),
        as_of,
        unit_days,
        max_members=max_members,
        seed=seed,
        min_members=min_members,
        min_repeaters=min_repeaters,
    )


__all__ = [
    "MIN_MEMBERS",
    "MIN_REPEATERS",
    "ValueModelError",
    "ValueParams",
    "bgnbd_log_likelihood",
    "fit_inputs",
    "fit_value_model",
    "gamma_gamma_log_likelihood",
    "quiet_pymc",
]
