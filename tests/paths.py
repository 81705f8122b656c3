"""Where shared test inputs live: `shared/` sits beside the repository (locally and in CI)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECSYS_SHARED_DIR", REPO.parent / "shared"))
ONLINE_RETAIL = SHARED / "datasets" / "online_retail" / "online_retail.csv.gz"
