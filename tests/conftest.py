"""Shared test fixtures. Real data lives beside the repository in ../shared/data
(or where FACEMARKS_SHARED_DATA points); tests that need it skip cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEMARKS_SHARED_DATA", REPO.parent / "shared" / "data"))


def _data_dir(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        if os.environ.get("CI"):  # CI has the shared data: a missing folder is a broken setup, not a skip
            pytest.fail(f"CI runs every real-data test, but {path} is missing")
        pytest.skip(f"real data not present: {path} (set FACEMARKS_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def data_300w() -> Path:
    return _data_dir("300w")


@pytest.fixture(scope="session")
def data_wflw() -> Path:
    return _data_dir("wflw")
