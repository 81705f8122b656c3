"""Uplift targeting: who buys *because* they are contacted, learned from past campaigns.

A past campaign with a control group gives, per member, features x, whether they were contacted
(treatment t) and whether they converted (y). An uplift model estimates the individual effect
tau(x) = P(y=1 | x, contacted) - P(y=1 | x, not contacted) and an audience is ranked by it
(``size.rank_by = "uplift"``) instead of by the propensity P(y=1 | x): propensity favours
"sure things" who buy anyway, uplift favours "persuadables".

Library: scikit-uplift (``sklift``) fits the model: its meta-learners wrap scikit-learn
estimators. Two methods:

- ``"two_model"`` (default; the best of those we tried on the planted data of
  feature_store.synthetic.campaigns, see docs/campaigns.md): one L2-regularised logistic
  regression on the treated members, one on the controls; tau(x) = p_t(x) - p_c(x). It works
  for any holdout share.
- ``"class_transformation"``: one logistic regression of z = 1[y == t] (Jaskowski & Jaroszewicz
  2012); tau(x) = 2 P(z=1 | x) - 1. The transformation assumes equal group sizes, so members are
  weighted to balance treatment and control.

Features: categorical columns (RFM scores 1..5, tier code, lifecycle code) are one-hot encoded
on the levels seen at fit time, so a non-monotone effect (persuadables in the middle of the RFM
range) is learnable by a linear model; numeric columns (audience score, value columns) are
standardised, a missing value (NaN) becomes the training mean.

Persistence without pickle: a fitted model is its feature encoding and the logistic coefficients
(:meth:`UpliftModel.to_dict` / :func:`load_model`, JSON); scoring needs numpy only, so serving
never imports scikit-learn or sklift. scikit-learn and sklift are imported only when fitting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from engine.campaigns.errors import CampaignInputError, ModelFormatError

FORMAT: Final[str] = "recsys-uplift-model/v1"
Method = Literal["two_model", "class_transformation"]
METHODS: Final[tuple[str, ...]] = ("two_model", "class_transformation")
#: default feature columns (the caller passes arrays under these names)
CATEGORICAL: Final[tuple[str, ...]] = ("r_score", "f_score", "m_score", "tier", "lifecycle")
NUMERIC: Final[tuple[str, ...]] = ("audience_score",)

FloatArray = npt.NDArray[np.float64]
Columns = Mapping[str, npt.ArrayLike]
Level = int | float | str


@dataclass(frozen=True, slots=True)
class FeatureEncoder:
    """One-hot for categorical columns (levels from the training data), z-scores for numeric."""

    categorical: dict[str, tuple[Level, ...]]
    numeric: dict[str, tuple[float, float]]  # name -> (mean, scale)

    @classmethod
    def fit(
        cls, columns: Columns, categorical: Sequence[str], numeric: Sequence[str]
    ) -> FeatureEncoder:
        cats: dict[str, tuple[Level, ...]] = {}
        for name in categorical:
            values = _column(columns, name)
            levels = np.unique(values[_known(values)])
            cats[name] = tuple(v.item() if isinstance(v, np.generic) else v for v in levels)
        nums: dict[str, tuple[float, float]] = {}
        for name in numeric:
            values = _column(columns, name).astype(np.float64)
            ok = values[np.isfinite(values)]
            mean = float(ok.mean()) if ok.size else 0.0
            scale = float(ok.std()) if ok.size > 1 and ok.std() > 0 else 1.0
            nums[name] = (mean, scale)
        return cls(cats, nums)

    @property
    def width(self) -> int:
        return sum(len(v) for v in self.categorical.values()) + len(self.numeric)

    def matrix(self, columns: Columns) -> FloatArray:
        """The design matrix (members x width), float64."""
        parts: list[FloatArray] = []
        for name, levels in self.categorical.items():
            values = _column(columns, name)
            parts.extend((values == level).astype(np.float64) for level in levels)
        for name, (mean, scale) in self.numeric.items():
            z = (_column(columns, name).astype(np.float64) - mean) / scale
            parts.append(np.where(np.isfinite(z), z, 0.0))
        if not parts:
            raise CampaignInputError("features", "no feature columns")
        return np.column_stack(parts)

    def to_dict(self) -> dict[str, Any]:
        """Lists of [name, ...] in column order (JSON objects could be reordered)."""
        return {
            "categorical": [[k, list(v)] for k, v in self.categorical.items()],
            "numeric": [[k, mean, scale] for k, (mean, scale) in self.numeric.items()],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeatureEncoder:
        return cls(
            {str(name): tuple(levels) for name, levels in raw["categorical"]},
            {str(name): (float(mean), float(scale)) for name, mean, scale in raw["numeric"]},
        )


def _column(columns: Columns, name: str) -> npt.NDArray[Any]:
    if name not in columns:
        raise CampaignInputError(f"features.{name}", "column missing")
    return np.asarray(columns[name])


def _known(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if values.dtype.kind == "f":
        return np.asarray(np.isfinite(values), dtype=np.bool_)
    if values.dtype.kind == "O":
        return np.array([v is not None for v in values], dtype=np.bool_)
    return np.ones(values.shape, dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class Logistic:
    """A fitted logistic regression: P(1 | row) = sigmoid(row @ coef + intercept)."""

    coef: FloatArray
    intercept: float

    def proba(self, x: FloatArray) -> FloatArray:
        logits = x @ self.coef + self.intercept
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * logits)), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], width: int) -> Logistic:
        coef = np.asarray(raw["coef"], dtype=np.float64)
        if coef.shape != (width,) or not np.isfinite(coef).all():
            raise ModelFormatError(f"uplift model: coef must hold {width} finite numbers")
        intercept = float(raw["intercept"])
        if not math.isfinite(intercept):
            raise ModelFormatError("uplift model: intercept must be finite")
        return cls(coef, intercept)


@dataclass(frozen=True, slots=True)
class UpliftModel:
    """A fitted uplift (or propensity) model; :meth:`predict` needs numpy only."""

    method: Literal["two_model", "class_transformation", "propensity"]
    encoder: FeatureEncoder
    #: "treated" and "control" (two_model), "transformed" (class_transformation) or
    #: "outcome" (propensity)
    parts: dict[str, Logistic]
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, columns: Columns) -> FloatArray:
        """Predicted uplift per member (propensity models: P(convert)), in [-1, 1]."""
        x = self.encoder.matrix(columns)
        if self.method == "two_model":
            return self.parts["treated"].proba(x) - self.parts["control"].proba(x)
        if self.method == "class_transformation":
            return 2.0 * self.parts["transformed"].proba(x) - 1.0
        return self.parts["outcome"].proba(x)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": self.method,
            "encoder": self.encoder.to_dict(),
            "parts": {k: v.to_dict() for k, v in self.parts.items()},
            "info": self.info,
        }

    def save(self, path: Path) -> Path:
        """Write the model as JSON (no pickle)."""
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path


_PARTS: Final[dict[str, tuple[str, ...]]] = {
    "two_model": ("treated", "control"),
    "class_transformation": ("transformed",),
    "propensity": ("outcome",),
}


def model_from_dict(raw: Mapping[str, Any]) -> UpliftModel:
    """Rebuild a model from :meth:`UpliftModel.to_dict`; :class:`ModelFormatError` if bad."""
    try:
        if raw.get("format") != FORMAT:
            raise ModelFormatError(f"not an uplift model of format {FORMAT!r}")
        method = raw["method"]
        if method not in _PARTS:
            raise ModelFormatError(f"unknown uplift method {method!r}")
        encoder = FeatureEncoder.from_dict(raw["encoder"])
        parts = {k: Logistic.from_dict(raw["parts"][k], encoder.width) for k in _PARTS[method]}
        return UpliftModel(method, encoder, parts, dict(raw.get("info", {})))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"uplift model: missing or malformed entry ({exc})") from exc


def load_model(path: Path) -> UpliftModel:
    """Read a model written by :meth:`UpliftModel.save`."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: cannot read the uplift model ({exc})") from exc
    return model_from_dict(raw)


def _binary(name: str, values: npt.ArrayLike, n: int | None = None) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1 or (n is not None and arr.size != n):
        raise CampaignInputError(name, "must be a 1-d array with one value per member")
    if not np.isin(arr, (0, 1)).all():
        raise CampaignInputError(name, "must be 0/1 (or booleans)")
    return arr.astype(np.int64)


def _logistic(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=c, max_iter=2_000, random_state=seed)


def _part(estimator: Any) -> Logistic:
    return Logistic(
        np.asarray(estimator.coef_[0], dtype=np.float64), float(estimator.intercept_[0])
    )


def fit_uplift(
    columns: Columns,
    treatment: npt.ArrayLike,
    outcome: npt.ArrayLike,
    *,
    method: Method = "two_model",
    categorical: Sequence[str] = CATEGORICAL,
    numeric: Sequence[str] = NUMERIC,
    c: float = 1.0,
    seed: int = 0,
) -> UpliftModel:
    """Fit an uplift model on members of past campaigns (features, contacted or not, converted).

    ``columns`` maps feature names to one array per member. Raises
    :class:`CampaignInputError` naming the field when the inputs cannot be used.
    """
    from sklift.models import ClassTransformation, TwoModels  # type: ignore[import-untyped]

    if method not in METHODS:
        raise CampaignInputError("method", f"must be one of {', '.join(METHODS)}")
    t = _binary("treatment", treatment)
    y = _binary("outcome", outcome, t.size)
    for group, members in (("treated", t == 1), ("control", t == 0)):
        responders = y[members]
        if responders.size == 0 or responders.min() == responders.max():
            raise CampaignInputError(
                "outcome", f"the {group} members need both converters and non-converters"
            )
    encoder = FeatureEncoder.fit(columns, categorical, numeric)
    x = encoder.matrix(columns)
    if x.shape[0] != t.size:
        raise CampaignInputError("features", "feature columns need one value per member")
    info = {
        "library": "scikit-uplift",
        "estimator": f"LogisticRegression(C={c})",
        "members": int(t.size),
        "treated": int(t.sum()),
        "converted": int(y.sum()),
    }
    if method == "two_model":
        two = TwoModels(_logistic(c, seed), _logistic(c, seed), method="vanilla")
        two.fit(x, y, t)
        parts = {"treated": _part(two.estimator_trmnt), "control": _part(two.estimator_ctrl)}
    else:
        share = t.mean()
        weight = np.where(t == 1, 0.5 / share, 0.5 / (1.0 - share))
        ct = ClassTransformation(_logistic(c, seed))
        ct.fit(x, y, t, estimator_fit_params={"sample_weight": weight})
        parts = {"transformed": _part(ct.estimator)}
    return UpliftModel(method, encoder, parts, info)


def fit_propensity(
    columns: Columns,
    outcome: npt.ArrayLike,
    *,
    categorical: Sequence[str] = CATEGORICAL,
    numeric: Sequence[str] = NUMERIC,
    c: float = 1.0,
    seed: int = 0,
) -> UpliftModel:
    """The comparison: P(convert | features), ignoring whether the member was contacted."""
    y = _binary("outcome", outcome)
    if y.size == 0 or y.min() == y.max():
        raise CampaignInputError("outcome", "needs both converters and non-converters")
    encoder = FeatureEncoder.fit(columns, categorical, numeric)
    estimator = _logistic(c, seed).fit(encoder.matrix(columns), y)
    info = {"library": "scikit-learn", "estimator": f"LogisticRegression(C={c})"}
    return UpliftModel("propensity", encoder, {"outcome": _part(estimator)}, info)
