"""Benchmark: VL4Pose pool scoring, end to end, in images/s.

The scored network is the stacked hourglass of `--preset` (default `paper`: 256-px input, 2
stacks, 256 channels, depth 4) with `AuxNet(head='vl4pose_heatmap')`, random weights (the
timing does not depend on training), scored with `likelihood.score_heatmaps` as VL4Pose does
(one peak per joint, min_distance 8, 'reference' mode). Prints one JSON object with:

  * `network_only`: hourglass + auxiliary net forward on a device-resident batch (ms/image, to
    compare with the PyTorch original's ~108 ms/image at batch 8 on the 2-core CPU);
  * `network_likelihood`: the same plus the likelihood scoring, one jitted function, on a
    device-resident batch (images/s, ms/image);
  * `data_only`: `acquisition.loader_batches(source, batch, image_size=...)` alone (PNG decode
    from array_record records, person-centred crop, batching), images/s;
  * `end_to_end`: `acquisition.select('vl4pose', ctx)` over the same loader on the whole pool
    (decode + crop + network + likelihood + top-k), timed on a second call (the first, on one
    batch of records, compiles);
  * `floor`: achieved GFLOP/s = images/s x 16.5 GFLOP (the issue's fp32 floor per paper-config
    image, ~0.46 GB memory traffic), the FLOPs XLA counts for the scoring function, and on a GPU
    the fraction of ~14,000 images/s (the H100 bf16 floor).

The pool is a `synthetic_human` build with 256-px people (`--pool` records, PNG in
array_record) made once into `--data_dir` (default: a temporary folder, removed at the end).
Timings are medians of `--repeats` calls after compilation, with `block_until_ready`; with
several local devices every batch is sharded over a ('data',) mesh (as acquisition streaming
does). `--devices 1,2,4` reruns the measurement in one subprocess per n (forced host devices on
CPU, the first n GPUs on a GPU machine) and reports images/s per n.

Run: `python benchmarks/scoring.py [--preset paper] [--precision float32|bfloat16] [--batch 8]
[--pool 256] [--devices 1,2,4]`; quick check: `--preset tiny --pool 64`.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

GFLOP_PER_IMAGE = 16.5  # the compute floor per paper-config image (fp32)
GB_PER_IMAGE = 0.46  # ... and its memory traffic
H100_BF16_IMAGES_PER_S = 14_000  # the floor-derived H100 bf16 rate (target: >= 10,000)


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The checkout's commit, with '+dirty' when tracked files differ from it."""
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def host() -> dict:
    """What describes a run without touching JAX's backend."""
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
            "cpu_count": os.cpu_count(), "cpu": cpu_model(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def environment() -> dict:
    import jax  # pylint: disable=import-outside-toplevel
    return {**host(), "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
            "jax": jax.__version__}


def build_pool(data_dir: str, pool: int, image_size: int):
    """The on-disk synthetic_human pool split of `pool` people at `image_size` px (built once)."""
    from vl4pose_jax import data  # pylint: disable=import-outside-toplevel
    from vl4pose_jax.data.synthetic_builders import SyntheticConfig  # pylint: disable=import-outside-toplevel
    config = SyntheticConfig(name=f"bench{image_size}px_pool{pool}", description="scoring benchmark",
                             num_train=0, num_pool=pool, num_test=0, image_size=image_size)
    with contextlib.redirect_stdout(sys.stderr):  # TFDS prints progress; stdout is the JSON
        return data.load("synthetic_human", "pool", data_dir=data_dir, config=config,
                         build_if_missing=True)


def median_seconds(fn, repeats: int) -> float:
    import jax  # pylint: disable=import-outside-toplevel
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(args) -> dict:
    """One process: every measurement on all local devices."""
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import optax  # pylint: disable=import-outside-toplevel

    from vl4pose_jax import acquisition, likelihood, models, parallel, skeletons, train  # pylint: disable=import-outside-toplevel

    result = environment()
    skeleton = skeletons.lsp14
    preset = models.PRESETS[args.preset]
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.precision]
    size = preset.input_size
    model = models.StackedHourglass(num_joints=skeleton.num_joints, dtype=dtype, **preset.kwargs)
    aux = models.AuxNet(head="vl4pose_heatmap", num_links=skeleton.num_links, dtype=dtype)
    start = time.perf_counter()
    state = train.init_heatmap_state(model, aux, jax.random.key(0), size, optax.sgd(0.0),
                                       optax.sgd(0.0))
    init_s = time.perf_counter() - start

    mesh = parallel.data_mesh()  # as acquisition streaming: None with one local device
    devices = parallel.num_devices(mesh)
    batch = -(-args.batch // devices) * devices  # what acquisition streaming pads to
    state = parallel.replicate(state, mesh)
    images_BxSxSx3 = parallel.shard_batch(
        {"x": np.random.default_rng(0).random((batch, size, size, 3), np.float32)}, mesh)["x"]

    def forward(st, images):
        variables = {"params": st.params, "batch_stats": st.batch_stats}
        out = model.apply(variables, images, train=False)
        link_params_BxLx2 = aux.apply({"params": st.aux_params}, out)["link_params_BxLx2"]
        return out["heatmaps"][:, -1], link_params_BxLx2

    @jax.jit
    def network(st, images):
        return forward(st, images)

    @jax.jit
    def network_likelihood(st, images):  # what acquisition streams per batch for 'vl4pose'
        heatmaps_BxHxWxJ, link_params_BxLx2 = forward(st, images)
        return likelihood.score_heatmaps(heatmaps_BxHxWxJ, link_params_BxLx2, skeleton,
                                         num_peaks=1, min_distance=8, exclude_border=True,
                                         reference_size=64, mode="reference")

    start = time.perf_counter()
    jax.block_until_ready(network_likelihood(state, images_BxSxSx3))
    compile_s = time.perf_counter() - start
    try:
        flops = network_likelihood.lower(state, images_BxSxSx3).cost_analysis()["flops"] / batch
    except Exception:  # pylint: disable=broad-except
        flops = None
    net_s = median_seconds(lambda: network(state, images_BxSxSx3), args.repeats)
    score_s = median_seconds(lambda: network_likelihood(state, images_BxSxSx3), args.repeats)
    result.update({
        "preset": args.preset, "precision": args.precision, "input_size": size,
        "batch": batch, "pool": args.pool, "repeats": args.repeats,
        "init_seconds": round(init_s, 1), "compile_seconds": round(compile_s, 1),
        "network_only": {"images_per_s": round(batch / net_s, 2),
                         "ms_per_image": round(1e3 * net_s / batch, 2)},
        "network_likelihood": {"images_per_s": round(batch / score_s, 2),
                               "ms_per_image": round(1e3 * score_s / batch, 2)},
    })

    if args.pool > 0:
        source = build_pool(args.data_dir, args.pool, size)
        batches = acquisition.loader_batches(source, batch, image_size=size,
                                             num_workers=args.workers)
        pool = np.arange(len(source))
        start, count = time.perf_counter(), 0
        for b in batches(pool):
            count += len(b["index"])
        data_s = time.perf_counter() - start

        def ctx(indices):
            return acquisition.Context(task="heatmap", model=model, aux=aux, state=state,
                                       skeleton=skeleton, batches=batches,
                                       labelled=np.zeros((0,), np.int64), pool=indices,
                                       budget=min(len(indices), 32), key=jax.random.key(0),
                                       progress=False)

        acquisition.select("vl4pose", ctx(pool[:batch]))  # compile the streamed function
        start = time.perf_counter()
        sel = acquisition.select("vl4pose", ctx(pool))
        e2e_s = time.perf_counter() - start
        assert len(sel.scores) == len(pool) and np.all(np.isfinite(sel.scores))
        result.update({
            "workers": args.workers,
            "data_only": {"images_per_s": round(count / data_s, 1)},
            "end_to_end": {"images_per_s": round(len(pool) / e2e_s, 2),
                           "ms_per_image": round(1e3 * e2e_s / len(pool), 2),
                           "seconds": round(e2e_s, 1)},
        })

    best = result.get("end_to_end", result["network_likelihood"])["images_per_s"]
    floor = {"gflop_per_image_floor": GFLOP_PER_IMAGE, "gb_per_image_floor": GB_PER_IMAGE,
             "xla_gflop_per_image": None if flops is None else round(flops / 1e9, 2)}
    if args.preset == "paper":
        floor["network_likelihood_gflop_per_s"] = round(
            result["network_likelihood"]["images_per_s"] * GFLOP_PER_IMAGE, 1)
        floor["end_to_end_gflop_per_s"] = (round(best * GFLOP_PER_IMAGE, 1)
                                           if "end_to_end" in result else None)
        if jax.default_backend() == "gpu":
            floor["fraction_of_h100_bf16_floor_rate"] = {
                "network_likelihood": round(result["network_likelihood"]["images_per_s"]
                                            / H100_BF16_IMAGES_PER_S, 4),
                "end_to_end": (round(best / H100_BF16_IMAGES_PER_S, 4)
                               if "end_to_end" in result else None)}
    result["floor"] = floor
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def scaling(args, argv) -> dict:
    """Rerun this script for each device count in a fresh subprocess; collect images/s. This
    process never starts a JAX backend (on a GPU it would hold the children's memory)."""
    start = host()
    probe = subprocess.run([sys.executable, "-c", "import jax; d = jax.devices(); print("
                            "jax.__version__, jax.default_backend(), len(d), d[0].device_kind)"],
                           capture_output=True, text=True, check=True)
    version, backend, real_count, kind = probe.stdout.strip().splitlines()[-1].split(" ", 3)
    real_count = int(real_count)
    child_argv = [a for i, a in enumerate(argv)
                  if not a.startswith("--devices") and not (i and argv[i - 1] == "--devices")]
    rows = []
    for n in [int(x) for x in args.devices.split(",")]:
        env = dict(os.environ)
        if backend == "cpu":
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                f" --xla_force_host_platform_device_count={n}").strip()
            env["JAX_PLATFORMS"] = "cpu"
        elif n > real_count:
            rows.append({"devices": n, "skipped": f"only {real_count} {backend} devices"})
            continue
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
        proc = subprocess.run([sys.executable, __file__, *child_argv, "--data_dir", args.data_dir],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode:
            rows.append({"devices": n, "error": proc.stderr[-2000:]})
            continue
        child = json.loads(proc.stdout)
        rows.append({"devices": child["num_devices"], "batch": child["batch"],
                     "network_only_images_per_s": child["network_only"]["images_per_s"],
                     "network_likelihood_images_per_s": child["network_likelihood"]["images_per_s"],
                     "end_to_end_images_per_s": child.get("end_to_end", {}).get("images_per_s"),
                     "loadavg_start": child["loadavg_start"], "loadavg_end": child["loadavg_end"]})
    note = (f"forced host devices (--xla_force_host_platform_device_count) all share this "
            f"machine's {os.cpu_count()} CPU cores, so more devices cannot add compute here: the "
            f"rows show how splitting each batch over a ('data',) mesh of CPU devices uses the "
            f"same cores (and its overhead), not scaling"
            if backend == "cpu" else f"the first n of {real_count} {backend} devices")
    return {"benchmark": "scoring_scaling", **start, "backend": backend, "device_kind": kind,
            "jax": version, "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "preset": args.preset,
            "precision": args.precision, "batch": args.batch, "pool": args.pool,
            "scaling": rows, "note": note}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pool", type=int, default=256,
                        help="on-disk pool records for the end-to-end timing (0: skip it)")
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data_dir", default=None,
                        help="where the synthetic pool is built (kept; default: a temporary one)")
    parser.add_argument("--devices", default=None,
                        help="comma-separated device counts, e.g. 1,2,4: one subprocess each")
    args = parser.parse_args()
    temporary = args.data_dir is None
    if temporary:
        args.data_dir = tempfile.mkdtemp(prefix="vl4pose_scoring_")
    try:
        if args.devices:
            from vl4pose_jax import models  # pylint: disable=import-outside-toplevel
            size = models.PRESETS[args.preset].input_size
            if args.pool:
                build_pool(args.data_dir, args.pool, size)  # once, before the subprocesses
            result = scaling(args, sys.argv[1:])
        else:
            result = {"benchmark": "scoring", **measure(args)}
    finally:
        if temporary:
            shutil.rmtree(args.data_dir, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
