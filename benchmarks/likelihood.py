"""Benchmark: VL4Pose heatmap scoring (`likelihood.score_heatmaps`) vs a per-image numpy baseline.

Prints one JSON object: images/s of the jitted `score_heatmaps` (after compilation) on 14-joint
(lsp14) 64x64 heatmaps at batch 256 for num_peaks K = 1 and 5 in each mode; images/s of the tree
programme alone from precomputed candidates (`score_candidates`); images/s of a straightforward
per-image numpy/scipy/skimage implementation of the "reference" algorithm (skimage
`peak_local_max` per joint, scipy softmax, the original recursion) timed on a subset, with its
peak finding timed separately; the largest difference between the two "reference" scores; and
the process's peak RSS after streaming a short and a 4x longer pool through the compiled scorer
in batches (memory independent of pool size). Functions are compiled ahead of time, run once,
then timed over --reps calls. Run: `python benchmarks/likelihood.py [--batch 256] [--reps 1]`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import sys
import time

import jax
import numpy as np
import scipy.special
from skimage.feature import peak_local_max

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout
from vl4pose_jax import likelihood as lk  # noqa: E402
from vl4pose_jax import skeletons  # noqa: E402

SKELETON = skeletons.lsp14
SIZE = 64
MIN_DISTANCE = 8


def synthetic_batch(rng, batch):
    """Predicted-looking heatmaps: a peak of 30 at a random pose, 0-3 weaker distractors, noise."""
    joints = SKELETON.num_joints
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    maps = rng.uniform(0.0, 0.5, (batch, SIZE, SIZE, joints)).astype(np.float32)
    centres = rng.uniform(8, SIZE - 8, (batch, joints, 4, 2)).astype(np.float32)
    amps = np.concatenate([np.full((batch, joints, 1), 30.0),
                           rng.uniform(5, 28, (batch, joints, 3))
                           * (rng.uniform(size=(batch, joints, 3)) < 0.5)], -1)
    for k in range(4):
        cx = centres[:, :, k, 0][:, None, None, :]
        cy = centres[:, :, k, 1][:, None, None, :]
        maps += amps[:, :, k][:, None, None, :] * np.exp(
            -((xx[None, :, :, None] - cx) ** 2 + (yy[None, :, :, None] - cy) ** 2) / (2 * 1.75**2))
    params = np.stack([rng.uniform(5, 20, (batch, SKELETON.num_links)),
                       rng.uniform(0, 3, (batch, SKELETON.num_links))], -1).astype(np.float32)
    return maps.astype(np.float32), params


# ---------------------------------------------------------------------------------------------
# Per-image numpy baseline: the reference's algorithm, written plainly.

def numpy_candidates(maps_HxWxJ, num_peaks):
    cands = []
    for j in range(maps_HxWxJ.shape[-1]):
        m = maps_HxWxJ[..., j]
        rc = peak_local_max(m, min_distance=MIN_DISTANCE, num_peaks=num_peaks, exclude_border=True)
        if len(rc) == 0:  # the reference crashes here; fall back to the argmax as we do
            rc = np.array([np.unravel_index(np.argmax(m), m.shape)])
        cands.append((rc[:, ::-1].astype(np.float64),
                      np.log(scipy.special.softmax(m[rc[:, 0], rc[:, 1]].astype(np.float64)))))
    return cands


def numpy_reference_score(maps_HxWxJ, params_Lx2, num_peaks):
    cands = numpy_candidates(maps_HxWxJ, num_peaks)
    children = [[] for _ in range(SKELETON.num_joints)]
    for k, (p, c) in enumerate(SKELETON.links):
        children[p].append((k, c))

    def value(child, parent_xy, link):  # sum over the child's candidates, vectorised
        xy, logp = cands[child]
        mu, s = params_Lx2[link]
        s = float(lk.LOG_VAR_MIN + np.logaddexp(0, s - lk.LOG_VAR_MIN)
                  - np.logaddexp(0, s - lk.LOG_VAR_MAX))
        d = np.linalg.norm(xy - parent_xy, axis=-1)
        v = -0.5 * (np.log(2 * np.pi) + s + (mu - d) ** 2 * np.exp(-s)) + logp
        for slot in range(len(logp)):
            for link2, grandchild in children[child]:
                v[slot] += value(grandchild, xy[slot], link2)
        return v.sum()

    xy, logp = cands[SKELETON.root]
    total = 0.0
    for h in range(len(logp)):
        total += logp[h] + sum(value(c, xy[h], k) for k, c in children[SKELETON.root])
    return total


# ---------------------------------------------------------------------------------------------

def timed(jitted, reps, dynamic, **static):
    """(seconds per call, last output) of a jitted function compiled ahead of time and warmed up."""
    compiled = jitted.lower(*dynamic, **static).compile()
    jax.block_until_ready(compiled(*dynamic))
    start = time.perf_counter()
    for _ in range(reps):
        out = jax.block_until_ready(compiled(*dynamic))
    return (time.perf_counter() - start) / reps, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--baseline-images", type=int, default=16)
    parser.add_argument("--pool-batches", type=int, default=2,
                        help="short pool for the memory check; the long pool is 4x this")
    parser.add_argument("--pool-batch-size", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    maps, params = synthetic_batch(rng, args.batch)
    result = {
        "benchmark": "likelihood.score_heatmaps",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax": jax.__version__, "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "processor": platform.processor() or None,
        "skeleton": SKELETON.name, "heatmap": [SIZE, SIZE], "batch": args.batch,
        "min_distance": MIN_DISTANCE, "exclude_border": True, "images_per_s": {},
    }
    for k in (1, 5):
        cands = lk.heatmap_candidates(maps, num_peaks=k, min_distance=MIN_DISTANCE)
        row, scores = {}, {}
        for mode in lk.MODES:
            sec, scores[mode] = timed(lk.score_heatmaps, args.reps, (maps, params),
                                      skeleton=SKELETON, num_peaks=k, min_distance=MIN_DISTANCE,
                                      mode=mode)
            row[mode] = round(args.batch / sec, 1)
        sec, _ = timed(lk.refine_pose, args.reps, (maps, params), skeleton=SKELETON, num_peaks=k,
                    min_distance=MIN_DISTANCE)
        row["refine_pose"] = round(args.batch / sec, 1)
        # The tree programme alone, from precomputed candidates (peak finding excluded).
        for mode in lk.MODES:
            sec, _ = timed(lk.score_candidates, 5 * args.reps, (*cands, params), skeleton=SKELETON,
                        mode=mode)
            row[f"{mode}_from_candidates"] = round(args.batch / sec, 1)
        sec, _ = timed(lk.decode_candidates, 5 * args.reps, (*cands, params), skeleton=SKELETON)
        row["refine_from_candidates"] = round(args.batch / sec, 1)

        n = min(args.baseline_images, args.batch)
        start = time.perf_counter()
        base = [numpy_reference_score(maps[i], params[i], k) for i in range(n)]
        base_sec = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for i in range(n):
            numpy_candidates(maps[i], k)
        peak_sec = (time.perf_counter() - start) / n
        ours = np.asarray(scores["reference"])[:n]
        row["numpy_per_image_reference"] = round(1.0 / base_sec, 1)
        row["numpy_per_image_peak_finding_only"] = round(1.0 / peak_sec, 1)
        row["numpy_baseline_images"] = n
        row["speedup_reference_vs_numpy"] = round(row["reference"] * base_sec, 1)
        row["max_abs_diff_vs_numpy"] = float(np.max(np.abs(ours - np.asarray(base))))
        row["max_rel_diff_vs_numpy"] = float(np.max(np.abs(ours - base) / np.abs(base)))
        result["images_per_s"][f"K={k}"] = row

    # Memory: stream a pool through the compiled scorer one batch at a time.
    size = args.pool_batch_size
    scorer = lk.score_heatmaps.lower(*synthetic_batch(rng, size), skeleton=SKELETON, num_peaks=5,
                                     min_distance=MIN_DISTANCE, mode="expected").compile()

    def stream(num_batches):
        out = [np.asarray(scorer(*synthetic_batch(np.random.default_rng(100 + b), size)))
               for b in range(num_batches)]
        return np.concatenate(out)

    kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731 (KiB on Linux)
    stream(args.pool_batches)
    short = kib()
    stream(4 * args.pool_batches)
    result["peak_rss_mib_streaming_k5_expected"] = {
        "batch": size,
        f"pool_{args.pool_batches * size}": round(short / 1024, 1),
        f"pool_{4 * args.pool_batches * size}": round(kib() / 1024, 1)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
