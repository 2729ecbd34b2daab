"""Generation speed of the built-in synthetic datasets (one process, one thread).

    python benchmarks/synthetic.py [--num 300] [--repeats 3] [--out results.json]

Prints JSON: examples per second for people at 64, 128 and 256 px, for 128-px rare-pose people
of each mode (`rare_poses`) and for hand depth frames, the best of `repeats` runs by process
CPU time (robust on a shared machine) and by wall time.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vl4pose_jax.data import synthetic  # noqa: E402


def _rate(make, num, repeats):
    make(0)  # warm caches
    best_cpu = best_wall = float("inf")
    for r in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(num):
            make(1 + r * num + i)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return {"examples_per_s_cpu": round(num / best_cpu, 1),
            "examples_per_s_wall": round(num / best_wall, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    results = {"machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "num": args.num, "repeats": args.repeats}
    for size in (64, 128, 256):
        results[f"human_{size}px"] = _rate(
            lambda i, s=size: synthetic.human_example(0, i, image_size=s), args.num, args.repeats)
    for mode in synthetic.RARE_POSE_MODES:
        results[f"human_128px_rare_{mode}"] = _rate(
            lambda i, m=mode: synthetic.human_example(0, i, ood_kind="rare_pose", rare_poses=m),
            args.num, args.repeats)
    results["hand_240x320"] = _rate(lambda i: synthetic.hand_example(0, i), args.num,
                                    args.repeats)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
