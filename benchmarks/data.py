"""Data pipeline throughput, printed as JSON.

    python benchmarks/data.py [--data_dir DIR] [--batch_size 16] [--image_size 256] [--seconds 10]

Measures (1) examples/s of the training pipeline on the LSPET subset (grain over the built
array_record files: JPEG decode, crop, augmentation, heatmaps, batching) with 0 and 2 worker
processes, (2) the same for evaluation crops (no augmentation), and (3) synthetic generation
examples/s (people and hands, straight from the generator, without TFDS). LSPET is read from
`$VL4POSE_SHARED_DATA` or ../shared/data and built into a temporary folder unless `--data_dir`
already holds a build. Every timing skips the first batch (worker start-up, file opening).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vl4pose_jax.data import builders, loader, synthetic  # noqa: E402


def _shared_data() -> pathlib.Path:
    env = os.environ.get("VL4POSE_SHARED_DATA")
    return pathlib.Path(env) if env else ROOT.parent / "shared" / "data"


def _throughput(source, *, train, num_workers, batch_size, image_size, seconds):
    ld = loader.make_loader(source, batch_size=batch_size, seed=0, train=train,
                            num_workers=num_workers, image_size=image_size,
                            num_epochs=None, shuffle=True, drop_remainder=True)
    it = iter(ld)
    next(it)  # start-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next(it)
        count += len(batch["index"])
    return count / (time.perf_counter() - start)


def _generation(fn, seconds):
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(count)
        count += 1
    return count / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = p.parse_args()

    result = dict(python=platform.python_version(), cpus=os.cpu_count(),
                  batch_size=args.batch_size, image_size=args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or tmp
        if not builders.get_builder("lspet", data_dir=data_dir).is_prepared():
            shared = _shared_data() / "lspet"
            if not shared.is_dir():
                result["lspet"] = f"skipped: {shared} not found"
            else:
                start = time.perf_counter()
                b = builders.build("lspet", manual_dir=shared, data_dir=data_dir)
                n = sum(s.num_examples for s in b.info.splits.values())
                result["lspet_build_examples_per_s"] = round(n / (time.perf_counter() - start), 1)
        if builders.get_builder("lspet", data_dir=data_dir).is_prepared():
            source = loader.load("lspet", "pool", data_dir=data_dir)
            result["lspet_pool_examples"] = len(source)
            for workers in (0, 2):
                for train in (True, False):
                    key = f"lspet_{'train' if train else 'eval'}_workers{workers}_examples_per_s"
                    result[key] = round(_throughput(
                        source, train=train, num_workers=workers, batch_size=args.batch_size,
                        image_size=args.image_size, seconds=args.seconds), 1)
    result["synthetic_human_generation_examples_per_s"] = round(_generation(
        lambda i: synthetic.human_example(0, 100000 + i), args.seconds / 2), 1)
    result["synthetic_hand_generation_examples_per_s"] = round(_generation(
        lambda i: synthetic.hand_example(0, 100000 + i), args.seconds / 2), 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
