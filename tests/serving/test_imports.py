"""The service's import footprint: no model libraries, no training code, no MLflow for bundles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_serving_imports_no_model_library_nor_training(bundle_dir: Path) -> None:
    code = (
        "import sys\n"
        "from serving.app import create_app\n"
        "from serving.model import ServingModel\n"
        "from serving.model_source import resolve_model\n"
        "from serving.settings import Settings\n"
        "from feature_store.policy import load_policy\n"
        f"resolved = resolve_model({str(bundle_dir)!r})\n"
        f"ServingModel.load(resolved, Settings(model_uri={str(bundle_dir)!r}), load_policy().tiers.names)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('implicit', 'lightfm', 'training', 'mlflow'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
