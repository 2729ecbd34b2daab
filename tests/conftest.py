"""Shared pytest fixtures: where the real data lives, and skipping cleanly without it."""
import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir() -> pathlib.Path:
    """`$VL4POSE_SHARED_DATA`, else `../shared/data` beside the project root."""
    env = os.environ.get("VL4POSE_SHARED_DATA")
    return pathlib.Path(env) if env else ROOT.parent / "shared" / "data"


def require_shared_data() -> pathlib.Path:
    """The real data folder, or skip the calling test or fixture with a reason."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set VL4POSE_SHARED_DATA)")
    return path


def lspet_manual_dir(shared, root, n: int, start: int = 0) -> pathlib.Path:
    """A manual directory holding LSPET's joints.mat and images start..start+n-1 (copied)."""
    from vl4pose_jax.data import formats  # pylint: disable=import-outside-toplevel
    manual = root / "lspet_dataset"
    (manual / "images").mkdir(parents=True)
    shutil.copy(shared / "lspet" / "joints.mat", manual / "joints.mat")
    for i in range(start, start + n):
        name = formats.lsp_image_name(i, extended=True)
        shutil.copy(shared / "lspet" / "images" / name, manual / "images" / name)
    return manual


@pytest.fixture
def shared_data():
    """Path to the real data folder; skips the test with a reason when it is absent."""
    return require_shared_data()


TIMING = ("seconds_train", "seconds_score")


def micro_config(data_dir, **kw):
    """The smallest AL simulation (micro network, tiny synthetic people, one round)."""
    from vl4pose_jax import protocol  # pylint: disable=import-outside-toplevel
    base = dict(dataset="synthetic_human", methods=("random",), preset="micro",
                data_config="tiny", data_dir=data_dir, init_size=16, budget=4, rounds=1,
                epochs=1, cycle_epochs=1, batch_size=8, progress=False)
    return protocol.Config(**{**base, **kw})


def strip_timing(rows):
    """Result rows without their wall-clock fields (for exact comparisons)."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
