"""The real-data check of the member-value model: calibrate, predict a holdout, compare.

Protocol (:func:`evaluate_holdout`): with calibration end E (exclusive, 00:00) and horizon h days,

1. statistics and fit use only purchase lines before E; every member with a purchase day before
   E is scored (others are not in the table);
2. actual = the member's purchase days in [E, E + h) (same definition as the statistics:
   calendar dates with a purchase order);
3. predictions of that count, compared by mean absolute error and Spearman rank correlation:

   - ``model``: BG/NBD expected purchase days in h.
   - ``past rate (all days)``: (x + 1) / (T + 1) * h, the member's purchase days per observed day
     (T + 1 observed days from the first purchase day to E - 1) extrapolated.
   - ``past rate (repeat days)``: x / T * h (0 when T = 0), the repeat-purchase rate of the BTYD
     literature's naive benchmark. Neither is obviously fairer (the first over-predicts recent
     first-time buyers, the second predicts 0 for every one-time buyer), so both are reported.
   - ``RFM score``: the policy's r + f + m score (feature_store.offline.build_features) mapped to a
     count without looking at the holdout: the mean purchase days in [E - h, E) per score as of
     E - h, applied to the scores as of E (a score unseen at E - h gets the overall mean).
     Its Spearman correlation ranks these mapped counts (the score order as learned).

4. the calibration table: mean predicted and actual purchase days by calibration frequency
   x = 0..6, 7+; and a churn check: precision and recall of rules flagging "no purchase day in
   [E, E + h)": ``p_alive < threshold``, the model's P(at least one purchase day in h) <
   threshold, and the rule-based lifecycle stages (at_risk or churned; churned) as of E.

:func:`write_holdout_report` writes value_holdout.md, value_holdout.csv (per member) and
value_holdout.png (the calibration plot).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from feature_store.dataset import Dataset
from feature_store.policy import FeaturePolicy, load_policy
from feature_store.schema import Col
from feature_store.transforms import Feat
from feature_store.value.fit import ValueParams, fit_inputs
from feature_store.value.scoring import prob_no_purchase, score_members
from feature_store.value.summary import ValueCol, model_inputs, purchase_day_counts, summaries

Progress = Callable[[str], None]
FloatArray = npt.NDArray[np.float64]

FILES: Final[tuple[str, str, str]] = ("value_holdout.md", "value_holdout.csv", "value_holdout.png")
#: calibration-frequency buckets of the calibration table: 0..CAP-1 and CAP+
FREQUENCY_CAP: Final[int] = 7
AT_RISK_STAGES: Final[tuple[str, ...]] = ("at_risk", "churned")

MODEL = "model"
RATE_ALL = "past rate (all days)"
RATE_REPEAT = "past rate (repeat days)"
RFM = "RFM score"


class MethodScore(BaseModel):
    """How well one method predicts the holdout purchase days."""

    model_config = ConfigDict(frozen=True)

    method: str
    description: str
    mae: float
    spearman: float
    mean_predicted: float


class CalibrationRow(BaseModel):
    """Mean predicted vs actual holdout purchase days for one calibration frequency."""

    model_config = ConfigDict(frozen=True)

    frequency: str
    members: int
    mean_predicted: float
    mean_actual: float


class ChurnRow(BaseModel):
    """A rule flagging members expected to make no purchase in the horizon."""

    model_config = ConfigDict(frozen=True)

    rule: str
    flagged: int
    true_positives: int
    #: None when the rule flags nobody
    precision: float | None
    recall: float


class HoldoutResult(BaseModel):
    """Everything :func:`evaluate_holdout` measured; ``predictions`` holds one row per member."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    calibration_end: date
    horizon_days: int
    members_scored: int
    mean_actual: float
    #: share of scored members with no purchase day in the horizon (the churn base rate)
    share_no_purchase: float
    params: ValueParams
    methods: list[MethodScore]
    calibration: list[CalibrationRow]
    churn: list[ChurnRow]
    #: RFM score (r + f + m) -> mean purchase days learned on [E - h, E)
    rfm_mapping: dict[int, float]
    seconds: float
    predictions: pl.DataFrame = Field(exclude=True, repr=False)

    def method(self, name: str) -> MethodScore:
        return next(m for m in self.methods if m.method == name)


def _spearman(predicted: FloatArray, actual: FloatArray) -> float:
    """Spearman's rho (NaN when either side is constant, instead of scipy's warning)."""
    from scipy.stats import spearmanr

    if predicted.size < 2 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return float("nan")
    return float(spearmanr(predicted, actual).statistic)


def _score(method: str, description: str, predicted: FloatArray, actual: FloatArray) -> MethodScore:
    return MethodScore(
        method=method,
        description=description,
        mae=float(np.mean(np.abs(predicted - actual))),
        spearman=_spearman(predicted, actual),
        mean_predicted=float(np.mean(predicted)),
    )


def _rfm_scores(dataset: Dataset, policy: FeaturePolicy, as_of: date) -> pl.DataFrame:
    """member_id, rfm_score (r + f + m, null for members who never bought), lifecycle."""
    from feature_store.offline import build_features

    # RFM and the rule-based lifecycle need no value model: leave its fit out of this build
    rules_only = replace(policy, value=replace(policy.value, enabled=False))
    members = build_features(dataset, rules_only, as_of).members
    score = (
        pl.col(Feat.R_SCORE).cast(pl.Int64)
        + pl.col(Feat.F_SCORE).cast(pl.Int64)
        + pl.col(Feat.M_SCORE).cast(pl.Int64)
    )
    return members.select(Col.MEMBER_ID, score.alias("rfm_score"), Feat.LIFECYCLE)


def _rfm_mapping(
    dataset: Dataset, policy: FeaturePolicy, early: date, end: date
) -> tuple[dict[int, float], float]:
    """Mean purchase days in [early, end) per RFM score as of ``early``, and the overall mean."""
    scores = _rfm_scores(dataset, policy, early).filter(pl.col("rfm_score").is_not_null())
    counts = purchase_day_counts(dataset.purchases, early, end)
    joined = scores.join(counts, on=Col.MEMBER_ID, how="left").with_columns(
        pl.col(ValueCol.PURCHASE_DAYS).fill_null(0)
    )
    if joined.height == 0:
        return {}, 0.0
    means = joined.group_by("rfm_score").agg(pl.col(ValueCol.PURCHASE_DAYS).mean())
    mapping = {int(s): float(m) for s, m in means.iter_rows()}
    return dict(sorted(mapping.items())), float(joined[ValueCol.PURCHASE_DAYS].mean())  # type: ignore[arg-type]


def _churn_rows(
    predictions: pl.DataFrame, thresholds: Sequence[float], horizon_days: int
) -> list[ChurnRow]:
    quiet = (predictions["actual_purchase_days"] == 0).to_numpy()
    positives = int(quiet.sum())

    def row(rule: str, flag: npt.NDArray[np.bool_]) -> ChurnRow:
        flagged = int(flag.sum())
        tp = int((flag & quiet).sum())
        return ChurnRow(
            rule=rule,
            flagged=flagged,
            true_positives=tp,
            precision=tp / flagged if flagged else None,
            recall=tp / positives if positives else float("nan"),
        )

    alive = predictions["p_alive"].to_numpy()
    active = predictions["p_purchase"].to_numpy()
    stage = predictions[Feat.LIFECYCLE].fill_null("").to_numpy()
    rows = [row(f"p_alive < {t:g}", alive < t) for t in thresholds]
    rows += [row(f"P(purchase in {horizon_days}d) < {t:g}", active < t) for t in thresholds]
    rows.append(row("lifecycle at_risk or churned", np.isin(stage, AT_RISK_STAGES)))
    rows.append(row("lifecycle churned", stage == "churned"))
    return rows


def _calibration(predictions: pl.DataFrame) -> list[CalibrationRow]:
    bucket = pl.col("frequency").clip(upper_bound=FREQUENCY_CAP).cast(pl.Int64).alias("bucket")
    table = (
        predictions.group_by(bucket)
        .agg(
            pl.len().alias("members"),
            pl.col("expected_orders").mean().alias("pred"),
            pl.col("actual_purchase_days").mean().alias("actual"),
        )
        .sort("bucket")
    )
    return [
        CalibrationRow(
            frequency=f"{b}+" if b == FREQUENCY_CAP else str(b),
            members=int(n),
            mean_predicted=float(p),
            mean_actual=float(a),
        )
        for b, n, p, a in table.iter_rows()
    ]


def evaluate_holdout(
    dataset: Dataset,
    calibration_end: date,
    horizon_days: int = 90,
    *,
    policy: FeaturePolicy | None = None,
    unit_days: float = 7.0,
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    max_members: int | None = None,
    progress: Progress | None = None,
    params: ValueParams | None = None,
    rfm_baseline: bool = True,
) -> HoldoutResult:
    """Fit on purchases before ``calibration_end`` and score the next ``horizon_days`` (see the
    module docstring). Raises ValueModelError when the calibration data cannot fit the model.

    ``params``: a model already fitted as of ``calibration_end`` (e.g. a snapshot's) instead of
    fitting one. ``rfm_baseline=False`` leaves out the RFM baseline and the lifecycle rows of
    the churn table (they need two feature builds)."""
    started = time.perf_counter()
    step = progress or (lambda _name: None)
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    policy = policy if policy is not None else load_policy(None)
    end = calibration_end
    stop = end + timedelta(days=horizon_days)

    step("value statistics")
    stats = summaries(dataset.purchases, end)
    inputs = model_inputs(stats, end)
    if params is None:
        step("fitting BG/NBD and Gamma-Gamma")
        params = fit_inputs(inputs, end, unit_days, max_members=max_members)
    step("scoring")
    x, t_x, age, m = inputs.frequency, inputs.recency_days, inputs.age_days, inputs.monetary
    scores = score_members(params, x, t_x, age, m, horizon_days=horizon_days)
    p_purchase = 1.0 - prob_no_purchase(params, x, t_x, age, horizon_days=horizon_days)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_all = (x + 1.0) / (age + 1.0) * horizon_days
        rate_repeat = np.where(age > 0, x / age, 0.0) * horizon_days

    step("actuals and RFM baseline" if rfm_baseline else "actuals")
    actual = purchase_day_counts(dataset.purchases, end, stop)
    if rfm_baseline:
        mapping, fallback = _rfm_mapping(dataset, policy, end - timedelta(days=horizon_days), end)
        at_end = _rfm_scores(dataset, policy, end).select(
            Col.MEMBER_ID, "rfm_score", Feat.LIFECYCLE
        )
    else:
        mapping, fallback = {}, math.nan
        at_end = pl.DataFrame(
            {Col.MEMBER_ID: inputs.member_id},
        ).with_columns(
            pl.lit(None, dtype=pl.Int64).alias("rfm_score"),
            pl.lit(None, dtype=pl.String).alias(Feat.LIFECYCLE),
        )
    predictions = (
        pl.DataFrame(
            {
                Col.MEMBER_ID: inputs.member_id,
                "frequency": x,
                "recency_days": t_x,
                "age_days": age,
                "monetary": m,
                "p_alive": scores.p_alive,
                "p_purchase": p_purchase,
                "expected_orders": scores.expected_orders,
                "expected_spend": scores.expected_spend,
                "clv": scores.clv,
                "rate_all_days": rate_all,
                "rate_repeat_days": rate_repeat,
            }
        )
        .join(at_end, on=Col.MEMBER_ID, how="left")
        .with_columns(
            pl.col("rfm_score")
            .replace_strict(
                list(mapping), list(mapping.values()), default=fallback, return_dtype=pl.Float64
            )
            .fill_null(fallback)
            .alias("rfm_predicted")
        )
        .join(
            actual.rename({ValueCol.PURCHASE_DAYS: "actual_purchase_days"}),
            on=Col.MEMBER_ID,
            how="left",
        )
        .with_columns(pl.col("actual_purchase_days").fill_null(0))
    )
    y = predictions["actual_purchase_days"].to_numpy().astype(np.float64)
    methods = [
        _score(
            MODEL, "BG/NBD expected purchase days", predictions["expected_orders"].to_numpy(), y
        ),
        _score(RATE_ALL, "(x + 1) / (T + 1) * h", rate_all, y),
        _score(RATE_REPEAT, "x / T * h (0 when T = 0)", rate_repeat, y),
    ]
    churn = _churn_rows(predictions, thresholds, horizon_days)
    if rfm_baseline:
        methods.append(
            _score(
                RFM,
                f"mean purchase days per r+f+m score, learned on [E - {horizon_days}d, E)",
                predictions["rfm_predicted"].to_numpy(),
                y,
            )
        )
    else:
        churn = [c for c in churn if not c.rule.startswith("lifecycle")]
    return HoldoutResult(
        calibration_end=end,
        horizon_days=horizon_days,
        members_scored=predictions.height,
        mean_actual=float(y.mean()) if y.size else math.nan,
        share_no_purchase=float((y == 0).mean()) if y.size else math.nan,
        params=params,
        methods=methods,
        calibration=_calibration(predictions),
        churn=churn,
        rfm_mapping=mapping,
        seconds=time.perf_counter() - started,
        predictions=predictions,
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown(result: HoldoutResult) -> str:
    """The report as Markdown."""
    p = result.params
    end = result.calibration_end
    lines = [
        "# Member value: holdout check",
        "",
        f"Calibration: purchases before {end} (exclusive); holdout: purchase days in "
        f"[{end}, {end + timedelta(days=result.horizon_days)}). "
        f"Members scored: {result.members_scored:,}; mean actual purchase days "
        f"{result.mean_actual:.3f}; {100 * result.share_no_purchase:.1f}% made none.",
        "",
        f"BG/NBD (time unit {p.unit_days:g} days): r = {p.r:.4f}, alpha = {p.alpha:.4f}, "
        f"a = {p.a:.4f}, b = {p.b:.4f} (log-likelihood {p.bgnbd_log_likelihood:.1f}, "
        f"{p.n_members:,} members).  ",
        f"Gamma-Gamma: p = {p.p:.4f}, q = {p.q:.4f}, v = {p.v:.4f} (mean value of a purchase "
        f"day {p.mean_spend_per_day:.2f}; {p.n_repeaters:,} repeat members).",
        "",
        "## Purchase days in the holdout",
        "",
        "| method | prediction | MAE | Spearman | mean predicted |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {m.method} | {m.description} | {_num(m.mae)} | {_num(m.spearman)} | "
        f"{_num(m.mean_predicted)} |"
        for m in result.methods
    ]
    lines += [
        "",
        "## Calibration by calibration-period repeat purchase days",
        "",
        "| repeat days | members | mean predicted | mean actual |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.frequency} | {c.members:,} | {_num(c.mean_predicted)} | {_num(c.mean_actual)} |"
        for c in result.calibration
    ]
    lines += [
        "",
        f"## Churn check: no purchase day in the next {result.horizon_days} days",
        "",
        f"Base rate: {100 * result.share_no_purchase:.1f}% of scored members. BG/NBD gives "
        "p_alive = 1 to every member without a repeat purchase (dropout happens only after "
        "a repeat purchase), so p_alive rules never flag one-time buyers.",
        "",
        "| rule | flagged | precision | recall |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {c.rule} | {c.flagged:,} | {_num(c.precision)} | {_num(c.recall)} |"
        for c in result.churn
    ]
    lines += ["", f"Computed in {result.seconds:.1f}s.", ""]
    return "\n".join(lines)


def _plot(result: HoldoutResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    labels = [c.frequency for c in result.calibration]
    positions = np.arange(len(labels))
    ax.plot(positions, [c.mean_actual for c in result.calibration], "o-", label="actual")
    ax.plot(positions, [c.mean_predicted for c in result.calibration], "s--", label="BG/NBD")
    ax.set_xticks(positions, labels)
    ax.set_xlabel("repeat purchase days in the calibration period")
    ax.set_ylabel(f"mean purchase days in the next {result.horizon_days} days")
    ax.set_title(f"Holdout calibration (calibration end {result.calibration_end})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


def write_holdout_report(result: HoldoutResult, out_dir: Path) -> dict[str, Path]:
    """Write value_holdout.md, value_holdout.csv and value_holdout.png; returns name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv, png = (out_dir / name for name in FILES)
    md.write_text(markdown(result))
    result.predictions.write_csv(csv)
    _plot(result, png)
    return {"markdown": md, "csv": csv, "png": png}


__all__ = [
    "FILES",
    "CalibrationRow",
    "ChurnRow",
    "HoldoutResult",
    "MethodScore",
    "evaluate_holdout",
    "markdown",
    "write_holdout_report",
]
