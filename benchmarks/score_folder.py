"""Benchmark: `experiments.score` over a folder of N images: images/s and peak host memory.

Writes N procedurally generated JPEGs (160x120 px, a few coloured blobs each, as small as
LSPET's most common size) into a temporary folder, makes a micro VL4Pose run (stacked hourglass
1 stack x 16 channels, 32-px input, random weights: `simulate.run` on the tiny synthetic set
with `--epochs=0`), then scores the folder with `experiments.score.run` (the command's own code:
streamed reading, JPEG decode and crop in a thread pool, VL4Pose score and keypoints in one
pass over every local device, then ranking.csv, COCO, Label Studio and gallery of the top 20).
A warm-up run on 64 images compiles first. Memory: the resident set sampled every 50 ms during
the timed run (peak and at the end) against the baseline after the warm-up; the O(N) part is
the per-image scores, keypoints and file names (a few hundred bytes per image).

Prints one JSON object. Run: `python benchmarks/score_folder.py [--images 10000]
[--batch 64] [--workers 2]`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout


def rss_mb() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def write_images(folder: pathlib.Path, count: int, start: int = 0):
    from PIL import Image
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
    for i in range(start, start + count):
        rng = np.random.default_rng(i)
        img = np.zeros((120, 160, 3), np.float32) + rng.uniform(0, 80, 3)
        for _ in range(4):
            cx, cy, s = rng.uniform(20, 140), rng.uniform(15, 105), rng.uniform(5, 20)
            img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))[..., None] * rng.uniform(50, 200, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img_{i:06d}.jpg",
                                                                     quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    import jax
    from experiments import score
    from vl4pose_jax import protocol, simulate
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="score_folder_"))
    t0 = time.perf_counter()
    warm, folder = tmp / "warm", tmp / "images"
    warm.mkdir()
    folder.mkdir()
    write_images(warm, 64)
    write_images(folder, args.images)
    seconds_write = time.perf_counter() - t0
    config = protocol.Config(dataset="synthetic_human", data_config="tiny", methods=("vl4pose",),
                             init_size=16, rounds=0, epochs=0, preset="micro", batch_size=8,
                             data_dir=str(tmp / "tfds"), progress=False, checkpoint_every=0)
    simulate.run(config, tmp / "work", log=lambda *a: None)
    kw = dict(top_k=20, batch_size=args.batch, workers=args.workers, progress=False,
              data_dir=str(tmp / "tfds"), log=lambda *a: None)
    score.run(tmp / "work", warm, tmp / "out_warm", **kw)
    base = rss_mb()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    _, scored = score.run(tmp / "work", folder, tmp / "out", **kw)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    end = rss_mb()
    print(json.dumps({
        "benchmark": "score_folder", "date": datetime.date.today().isoformat(),
        "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
        "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
        "images": args.images, "batch": args.batch, "image_px": [160, 120],
        "seconds_generate": round(seconds_write, 1),
        "seconds_score_and_export": round(seconds, 2),
        "images_per_s": round(args.images / seconds, 1),
        "rss_after_warmup_mb": round(base, 1), "rss_peak_mb": round(peak[0], 1),
        "rss_end_mb": round(end, 1),
        "growth_bytes_per_image": round((peak[0] - base) * 2**20 / args.images, 1),
        "scored": int(np.isfinite(scored.score).sum())}, indent=1))


if __name__ == "__main__":
    main()
