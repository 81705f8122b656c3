"""Evaluation of uplift scores on a randomised campaign: Qini and uplift curves, Qini coefficient,
AUUC and uplift@k. Pure numpy.

The definitions are the textbook ones as scikit-uplift implements them (``sklift.metrics``), so
figures agree with that library; they are written out here because sklift's own functions call
a scikit-learn helper that scikit-learn 1.8 deprecated and 1.10 removes (tests check the two
agree while both run). Members are sorted by score, best first; a curve has one point per
distinct score (ties move together) and starts at (0, 0). With n_t(k), n_c(k) the treated and
control members among the first k and y_t(k), y_c(k) their responders:

- **Qini curve**: Q(k) = y_t(k) - y_c(k) * n_t(k) / n_c(k): incremental responders among the
  treated of the top k (0 while the top k holds no control member).
- **Uplift curve**: U(k) = (y_t(k) / n_t(k) - y_c(k) / n_c(k)) * k: incremental responders had
  all of the top k been treated.
- **Qini coefficient** (Radcliffe's, normalised): (area under the model's Qini curve - area under
  the random line) / (the same for the perfect ranking); 1 = perfect, 0 = random, < 0 = worse.
  The perfect ranking puts treated responders first and control responders last.
- **AUUC**: the same normalisation for the uplift curve (perfect ranking as in sklift).
- **uplift@k**: response rate of the treated minus that of the controls among the top k share
  of all members ("overall") or the top k share of each group ("by_group").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _check(
    y: npt.ArrayLike, score: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    yy = np.asarray(y, dtype=np.float64)
    ss = np.asarray(score, dtype=np.float64)
    tt = np.asarray(treatment, dtype=np.float64)
    if not (yy.shape == ss.shape == tt.shape) or yy.ndim != 1:
        raise ValueError("outcome, score and treatment must be 1-d arrays of one length")
    for name, arr in (("outcome", yy), ("treatment", tt)):
        if not np.isin(arr, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be binary (0/1)")
    if not np.isfinite(ss).all():
        raise ValueError("scores must be finite")
    return yy, ss, tt


def _cumulative(
    y: FloatArray, score: FloatArray, t: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    order = np.argsort(score, kind="mergesort")[::-1]
    y, score, t = y[order], score[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(score)), y.size - 1]
    n_t = np.cumsum(t)[last]
    y_t = np.cumsum(y * t)[last]
    y_c = np.cumsum(y * (1.0 - t))[last]
    n_all = (last + 1).astype(np.float64)
    return n_all, n_t, n_all - n_t, y_t, y_c


def _ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _from_origin(x: FloatArray, q: FloatArray) -> tuple[FloatArray, FloatArray]:
    if x.size == 0 or x[0] != 0 or q[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, q]
    return x, q


def qini_curve(
    y: npt.ArrayLike, score: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """(members targeted, incremental responders) at each distinct score, from (0, 0)."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(*_check(y, score, treatment))
    return _from_origin(n_all, y_t - y_c * _ratio(n_t, n_c))


def uplift_curve(
    y: npt.ArrayLike, score: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """(members targeted, (rate treated - rate control) x members targeted), from (0, 0)."""
    n_all, n_t, n_c, y_t, y_c = _cumulative(*_check(y, score, treatment))
    return _from_origin(n_all, (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * n_all)


def _area(x: FloatArray, q: FloatArray) -> float:
    return float(np.trapezoid(q, x)) if x.size > 1 else 0.0


def _normalised(
    actual: tuple[FloatArray, FloatArray], perfect: tuple[FloatArray, FloatArray]
) -> float:
    xp, qp = perfect
    baseline = _area(np.array([0.0, xp[-1]]), np.array([0.0, qp[-1]]))
    best = _area(*perfect) - baseline
    return (_area(*actual) - baseline) / best if best != 0 else 0.0


def qini_coefficient(y: npt.ArrayLike, score: npt.ArrayLike, treatment: npt.ArrayLike) -> float:
    """Normalised area between the Qini curve and the random line (1 = perfect ranking)."""
    yy, ss, tt = _check(y, score, treatment)
    perfect = qini_curve(yy, yy * tt - yy * (1.0 - tt), tt)
    return _normalised(qini_curve(yy, ss, tt), perfect)


def auuc(y: npt.ArrayLike, score: npt.ArrayLike, treatment: npt.ArrayLike) -> float:
    """Normalised area under the uplift curve (sklift's ``uplift_auc_score``)."""
    yy, ss, tt = _check(y, score, treatment)
    control_responders = np.sum((yy == 1) & (tt == 0))
    treated_non_responders = np.sum((yy == 0) & (tt == 1))
    summand = yy if control_responders > treated_non_responders else tt
    perfect = uplift_curve(yy, 2.0 * (yy == tt) + summand, tt)
    return _normalised(uplift_curve(yy, ss, tt), perfect)


def uplift_at_k(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    treatment: npt.ArrayLike,
    k: float,
    strategy: Literal["overall", "by_group"] = "overall",
) -> float:
    """Response rate treated - control among the top ``k`` (a share in (0, 1]) by score."""
    yy, ss, tt = _check(y, score, treatment)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be a share in (0, 1] (got {k})")
    order = np.argsort(ss, kind="mergesort")[::-1]
    yy, tt = yy[order], tt[order]
    if strategy == "overall":
        top = slice(0, int(yy.size * k))
        yt, tt_top = yy[top], tt[top]
        treated, control = yt[tt_top == 1], yt[tt_top == 0]
    elif strategy == "by_group":
        treated_all, control_all = yy[tt == 1], yy[tt == 0]
        treated = treated_all[: int(treated_all.size * k)]
        control = control_all[: int(control_all.size * k)]
    else:
        raise ValueError(f"strategy must be 'overall' or 'by_group' (got {strategy!r})")
    if treated.size == 0 or control.size == 0:
        raise ValueError("the top k holds no treated or no control member: raise k")
    return float(treated.mean() - control.mean())


@dataclass(frozen=True, slots=True)
class UpliftEvaluation:
    """A score's Qini coefficient, AUUC and uplift@k on one randomised sample."""

    qini: float
    auuc: float
    uplift_at: dict[float, float]
    qini_x: FloatArray
    qini_y: FloatArray


def evaluate_uplift(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    treatment: npt.ArrayLike,
    ks: tuple[float, ...] = (0.1, 0.2, 0.3),
) -> UpliftEvaluation:
    """All the metrics above for one score (e.g. on held-out campaigns)."""
    x, q = qini_curve(y, score, treatment)
    at = {k: uplift_at_k(y, score, treatment, k) for k in ks}
    return UpliftEvaluation(
        qini_coefficient(y, score, treatment), auuc(y, score, treatment), at, x, q
    )


def true_gain_at(score: npt.ArrayLike, effect: npt.ArrayLike, sizes: npt.ArrayLike) -> FloatArray:
    """Planted incremental responders when the top ``size`` members by score are contacted:
    the sum of the true individual effects (known only in simulations), for each size."""
    s = np.asarray(score, dtype=np.float64)
    e = np.asarray(effect, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")[::-1]
    gains = np.r_[0.0, np.cumsum(e[order])]
    return np.asarray(
        gains[np.clip(np.asarray(sizes, dtype=np.int64), 0, s.size)], dtype=np.float64
    )
