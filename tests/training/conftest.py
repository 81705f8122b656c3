"""A small synthetic dataset shared by the training tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_store.synthetic import SynthConfig, write_synthetic

#: small enough for seconds, large enough for the planted structure to show
TINY = SynthConfig(members=1500, items=300, purchases=40_000, seed=7)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    write_synthetic(TINY, folder)
    return folder
