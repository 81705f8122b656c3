"""Synthetic loyalty-programme data with planted, documented structure and its ground truth.

``write_synthetic(SynthConfig(members=..., items=..., purchases=..., seed=...), folder)`` writes
a canonical dataset (members, items, purchases) and ``folder/ground_truth/`` (each member's
taste clusters and planted category shares, item vectors and popularity, cluster affinities,
staples, synth.json with every parameter). Same seed, same bytes. See docs/synthetic_data.md.
"""

from feature_store.synthetic.config import CATEGORIES, Category, SynthConfig
from feature_store.synthetic.generate import (
    GROUND_TRUTH_DIR,
    SynthResult,
    SynthSummary,
    generate,
    write_synthetic,
)

__all__ = [
    "CATEGORIES",
    "GROUND_TRUTH_DIR",
    "Category",
    "SynthConfig",
    "SynthResult",
    "SynthSummary",
    "generate",
    "write_synthetic",
]
