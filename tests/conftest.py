"""Shared pytest fixtures: where the real data lives, and skipping cleanly without it."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir() -> pathlib.Path:
    """`$VL4POSE_SHARED_DATA`, else `../shared/data` beside the project root."""
    env = os.environ.get("VL4POSE_SHARED_DATA")
    return pathlib.Path(env) if env else ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """Path to the real data folder; skips the test with a reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set VL4POSE_SHARED_DATA)")
    return path
