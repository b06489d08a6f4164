"""Fixtures shared by the test modules."""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Read-only benchmark data that lives next to the repository, not in it.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def maros_meszaros(shared_data) -> Path:
    folder = shared_data / "maros_meszaros"
    if not (folder / "mat").is_dir() or not (folder / "qps").is_dir():
        pytest.skip(f"Maros–Meszaros data not found at {folder}")
    return folder
