"""Campaigns that prove their lift: holdout groups, outcome statistics, reports and uplift.

- :mod:`engine.campaigns.holdout`: deterministic treatment / control assignment (a hash);
- :mod:`engine.campaigns.stats`: per-group metrics and differences with intervals (numpy/scipy);
- :mod:`engine.campaigns.report`: outcomes per member -> :class:`CampaignReport` (pydantic);
- :mod:`engine.campaigns.report_files`: the report as Markdown, CSV, JSON and PNG plots;
- :mod:`engine.campaigns.uplift` / :mod:`engine.campaigns.uplift_metrics`: uplift models
  (scikit-uplift, saved as JSON) and Qini / AUUC / uplift@k.

The SQL campaign store and the extraction of outcomes from purchases live in
feature_store.campaigns; this package never imports feature_store. Names are imported lazily.
See docs/campaigns.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.campaigns.errors import CampaignError, CampaignInputError, ModelFormatError
    from engine.campaigns.holdout import (
        HOLDOUT_SCHEME,
        HoldoutSplit,
        control_mask,
        holdout_draws,
        is_control,
        split_holdout,
        validate_percent,
    )
    from engine.campaigns.report import (
        CampaignFacts,
        CampaignReport,
        GroupOutcomes,
        build_report,
        validate_window,
    )
    from engine.campaigns.report_files import write_report
    from engine.campaigns.uplift import (
        UpliftModel,
        fit_propensity,
        fit_uplift,
        load_model,
        model_from_dict,
    )
    from engine.campaigns.uplift_metrics import UpliftEvaluation, evaluate_uplift

_EXPORTS = {
    "CampaignError": "engine.campaigns.errors",
    "CampaignInputError": "engine.campaigns.errors",
    "ModelFormatError": "engine.campaigns.errors",
    "HOLDOUT_SCHEME": "engine.campaigns.holdout",
    "HoldoutSplit": "engine.campaigns.holdout",
    "control_mask": "engine.campaigns.holdout",
    "holdout_draws": "engine.campaigns.holdout",
    "is_control": "engine.campaigns.holdout",
    "split_holdout": "engine.campaigns.holdout",
    "validate_percent": "engine.campaigns.holdout",
    "CampaignFacts": "engine.campaigns.report",
    "CampaignReport": "engine.campaigns.report",
    "GroupOutcomes": "engine.campaigns.report",
    "build_report": "engine.campaigns.report",
    "validate_window": "engine.campaigns.report",
    "write_report": "engine.campaigns.report_files",
    "UpliftModel": "engine.campaigns.uplift",
    "fit_propensity": "engine.campaigns.uplift",
    "fit_uplift": "engine.campaigns.uplift",
    "load_model": "engine.campaigns.uplift",
    "model_from_dict": "engine.campaigns.uplift",
    "UpliftEvaluation": "engine.campaigns.uplift_metrics",
    "evaluate_uplift": "engine.campaigns.uplift_metrics",
}

__all__ = [
    "HOLDOUT_SCHEME",
    "CampaignError",
    "CampaignFacts",
    "CampaignInputError",
    "CampaignReport",
    "GroupOutcomes",
    "HoldoutSplit",
    "ModelFormatError",
    "UpliftEvaluation",
    "UpliftModel",
    "build_report",
    "control_mask",
    "evaluate_uplift",
    "fit_propensity",
    "fit_uplift",
    "holdout_draws",
    "is_control",
    "load_model",
    "model_from_dict",
    "split_holdout",
    "validate_percent",
    "validate_window",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.campaigns' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return list(__all__)
