"""grain loader: seeded, checkpointable iterators, subsets, worker processes."""

import numpy as np
import pytest

from conftest import lspet_manual_dir, require_shared_data
from vl4pose_jax.data import builders, loader

N = 16


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("lspet_loader")
    manual = lspet_manual_dir(require_shared_data(), root, N)
    builders.build("lspet", manual_dir=manual, data_dir=root / "tfds")
    return loader.load("lspet", "pool", data_dir=root / "tfds")


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_same_seed_same_batches(pool):
    kw = dict(batch_size=4, train=True, image_size=32)
    a = _take(iter(loader.make_loader(pool, seed=3, **kw)), 2)
    b = _take(iter(loader.make_loader(pool, seed=3, **kw)), 2)
    c = _take(iter(loader.make_loader(pool, seed=4, **kw)), 2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["index"], y["index"])
    assert not all(np.array_equal(x["index"], z["index"]) for x, z in zip(a, c))


def test_iterator_state_resumes_exactly(pool):
    ld = loader.make_loader(pool, batch_size=4, seed=0, train=True, image_size=32)
    it = iter(ld)
    _take(it, 5)  # crosses an epoch boundary (N = 16 -> ~3 batches per epoch)
    state = it.get_state()
    expected = _take(it, 2)
    resumed = iter(loader.make_loader(pool, batch_size=4, seed=0, train=True, image_size=32))
    resumed.set_state(state)
    for x, y in zip(expected, _take(resumed, 2)):
        np.testing.assert_array_equal(x["index"], y["index"])
        np.testing.assert_array_equal(x["joints"], y["joints"])
        np.testing.assert_array_equal(x["image"], y["image"])


def test_subset_iterator_state_resumes_in_a_new_loader(pool):
    """grain checks the data source's repr on restore: a subset's repr must be stable."""
    picked = np.arange(2, 14)
    make = lambda: loader.make_loader(pool, batch_size=4, seed=1, train=True, image_size=32,
                                      indices=picked)
    it = iter(make())
    _take(it, 2)
    state = it.get_state()
    expected = _take(it, 2)
    resumed = iter(make())
    resumed.set_state(state)
    for x, y in zip(expected, _take(resumed, 2)):
        np.testing.assert_array_equal(x["index"], y["index"])


def test_eval_pass_keeps_every_record_in_order(pool):
    batches = list(loader.make_loader(pool, batch_size=5, seed=0, train=False, image_size=32))
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(index, np.arange(len(pool)))
    assert len(batches[-1]["index"]) == len(pool) % 5 or len(pool) % 5 == 0


def test_subset_keeps_record_indices_and_ids(pool):
    picked = [5, 2, 7]
    (batch,) = list(loader.make_loader(pool, batch_size=3, seed=0, train=False, image_size=32,
                                       indices=picked))
    np.testing.assert_array_equal(batch["index"], picked)
    ids = pool.ids()
    assert list(batch["id"]) == [ids[i] for i in picked]
    np.testing.assert_array_equal(pool.indices_of(list(batch["id"])), picked)
    with pytest.raises(KeyError, match="nope"):
        pool.indices_of(["nope"])


def test_worker_processes_give_the_same_records(pool):
    def per_id(num_workers):
        ld = loader.make_loader(pool, batch_size=4, seed=1, train=True, image_size=32,
                                num_epochs=1, num_workers=num_workers, drop_remainder=False)
        out = {}
        for b in ld:
            for k, i in enumerate(b["id"]):
                out[str(i)] = b["joints"][k]
        return out
    single, multi = per_id(0), per_id(2)
    assert set(single) == set(multi) == set(pool.ids()) and len(single) >= 8
    for k in single:
        np.testing.assert_array_equal(single[k], multi[k])
