"""Helpers for the MLflow tests: a tiny blend bundle with a known answer and fast tmp stores.

Every test gets its own SQLite store, copied from one empty store migrated once per test
process (creating MLflow's tables takes seconds, copying the file milliseconds). Nothing is
written under the repository's ``mlflow/`` folder.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from engine.blend import BlendWeights
from engine.bundle import write_bundle
from training.tracking import Tracker

MEMBERS = ["m0", "m1", "m2", "m3"]
ITEMS = ["i0", "i1", "i2", "i3", "i4"]
#: Trending prior: the popular fallback ranks i1 (0.5), i3 (0.4), i2 (0.2), i0 (0.1), i4 (0).
_TEMPLATE: Path | None = None
TRENDING = np.array([0.1, 0.5, 0.2, 0.4, 0.0], dtype=np.float32)


def write_blend_bundle(path: Path) -> Path:
    """Member ``m<u>`` has the one-hot vector of item ``i<u>``: its embedding score is 1 for
    ``i<u>`` and 0 for every other item. The blend uses the embedding only (buy-again and
    trending weights 0), so each member's first recommendation is ``i<u>`` with score 1.0 and
    source ``model``, followed by the 0-scored items in index order. ``m0`` bought ``i4``."""
    member_vectors = np.eye(len(MEMBERS), len(ITEMS), dtype=np.float32)
    item_vectors = np.eye(len(ITEMS), dtype=np.float32)
    # each member's vector is the one-hot of its item in the 5-dim item space
    history = sp.csr_array(
        (np.array([1.0], dtype=np.float32), (np.array([0]), np.array([4]))),
        shape=(len(MEMBERS), len(ITEMS)),
    )
    weights = BlendWeights(embedding=1.0, buy_again=0.0, trending=0.0, trending_candidates=0)
    return write_bundle(
        path,
        manifest={"kind": "als", "blend": weights.as_dict()},
        arrays={
            "member_vectors": member_vectors,
            "item_vectors": item_vectors,
            "trending": TRENDING,
        },
        sparse={"buy_again": history},
        member_ids=MEMBERS,
        item_ids=ITEMS,
    )


def migrated_store(folder: Path | None = None) -> Path:
    """An empty MLflow SQLite store (tables only); return the database file.

    Without ``folder`` the store is made once per test process in a temporary folder (removed
    at exit) and shared: it is only ever copied. No experiment is created here, each copy
    creates its own with artifacts beside it."""
    global _TEMPLATE
    if folder is None:
        if _TEMPLATE is None:
            shared = Path(tempfile.mkdtemp(prefix="recsys-mlflow-template-"))
            atexit.register(shutil.rmtree, shared, True)
            _TEMPLATE = migrated_store(shared)
        return _TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "mlflow.db"
    Tracker(f"sqlite:///{database}")  # opening the store creates and migrates the tables
    return database


def fresh_tracker(template: Path, folder: Path) -> Tracker:
    """A tracker on a private copy of the migrated ``template`` store inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "mlflow.db"
    shutil.copyfile(template, database)
    return Tracker(f"sqlite:///{database}")
