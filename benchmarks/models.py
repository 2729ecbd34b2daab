"""Model speed: hourglass + auxiliary net forward, hourglass train step, DeepPrior MC dropout,
DeepPrior train step per hand crop size (the simulator's nets for 128 px 'tiny' and 64 px 'small').

Prints one JSON object. Timings are after compilation, median of `--repeats` timed calls, with
`block_until_ready`; the 1-min/5-min/15-min load averages at the start and end are recorded.
Run: `python benchmarks/models.py [--preset=paper] [--batch=16] [--precision=bfloat16]
[--parts=deepprior_train]`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout
from vl4pose_jax import models, nets, protocol, skeletons, train  # noqa: E402
from vl4pose_jax.models import deepprior  # noqa: E402
from scoring import median_seconds as _time  # noqa: E402  (benchmarks/ is on the path)




def hourglass(preset: str, batch: int, repeats: int, dtype=jnp.float32):
    skeleton = skeletons.lsp14
    config = models.PRESETS[preset]
    model = models.StackedHourglass(num_joints=skeleton.num_joints, dtype=dtype, **config.kwargs)
    aux = models.AuxNet(head="vl4pose_heatmap", num_links=skeleton.num_links, dtype=dtype)
    tx = optax.adam(train.HOURGLASS_LR)
    state = train.init_heatmap_state(model, aux, jax.random.key(0), config.input_size, tx, tx)
    rng = np.random.default_rng(0)
    size, hm = config.input_size, config.heatmap_size
    batch_data = {
        "image": jnp.asarray(rng.random((batch, size, size, 3), np.float32)),
        "heatmaps": jnp.asarray(rng.random((batch, hm, hm, skeleton.num_joints), np.float32)),
        "joints": jnp.asarray(rng.uniform(0, hm - 1, (batch, skeleton.num_joints, 2)), jnp.float32),
        "visible": jnp.ones((batch, skeleton.num_joints), jnp.float32),
    }
    predict = train.make_heatmap_predict(model, aux)
    forward_s = _time(lambda: predict(state, batch_data["image"]), repeats)
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=skeleton)
    holder = {"state": state}

    def one_step():
        holder["state"], logs = step(holder["state"], batch_data)
        return logs

    train_s = _time(one_step, repeats)
    return {
        "preset": preset, "batch": batch, "input_size": size,
        "params_hourglass": models.count_params({"params": state.params}),
        "params_auxnet": models.count_params({"params": state.aux_params}),
        "forward_images_per_s": batch / forward_s, "forward_ms_per_image": 1e3 * forward_s / batch,
        "train_step_images_per_s": batch / train_s,
        "train_step_ms_per_image": 1e3 * train_s / batch,
    }


def deepprior_mc(batch: int, num_samples: int, repeats: int, dtype=jnp.float32):
    model = models.DeepPrior(num_joints=skeletons.icvl16.num_joints, dropout="C", aleatoric=True,
                             dtype=dtype)
    depth = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, 128, 128, 1)), jnp.float32)
    variables = model.init(jax.random.key(0), depth[:1])
    run = jax.jit(lambda v, d, k: deepprior.mc_predict(model, v, d, k, num_samples=num_samples))
    seconds = _time(lambda: run(variables, depth, jax.random.key(1)), repeats)
    return {"batch": batch, "mc_samples": num_samples, "images_per_s": batch / seconds,
            "forward_passes_per_s": batch * num_samples / seconds}


def deepprior_train(batch: int, repeats: int):
    """One optimiser step of plain DeepPrior (synthetic hands, the simulator's jitted step) at
    each hand crop size."""
    out = {}
    for preset in ("tiny", "small"):
        size = protocol.HAND_SIZES[preset]
        n = nets.nets("regression", skeletons.icvl16, preset, None, train.DEEPPRIOR_LR)
        rng = np.random.default_rng(0)
        batch_data = {"depth": jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 1)), jnp.float32),
                      "joints": jnp.asarray(rng.uniform(-1, 1, (batch, 16, 3)), jnp.float32),
                      "visible": jnp.ones((batch, 16), jnp.float32)}
        holder = {"state": n.init(jax.random.key(0))}

        def one_step():
            holder["state"], logs = n.step(holder["state"], batch_data)
            return logs

        out[f"{size}px"] = {"preset": preset, "batch": batch,
                            "train_step_s": round(_time(one_step, repeats), 4)}
    return out


PARTS = ("hourglass", "deepprior_mc", "deepprior_train")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="paper", choices=sorted(models.PRESETS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mc_batch", type=int, default=64)
    parser.add_argument("--mc_samples", type=int, default=70)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="compute dtype (parameters and losses stay float32)")
    parser.add_argument("--hand_batch", type=int, default=32)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    args = parser.parse_args()
    parts = args.parts.split(",")
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.precision]
    result = {
        "benchmark": "models",
        "date": datetime.date.today().isoformat(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "precision": args.precision,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    if "hourglass" in parts:
        result["hourglass"] = hourglass(args.preset, args.batch, args.repeats, dtype)
    if "deepprior_mc" in parts:
        result["deepprior_mc_dropout"] = deepprior_mc(args.mc_batch, args.mc_samples, args.repeats,
                                                      dtype)
    if "deepprior_train" in parts:
        result["deepprior_train_step"] = deepprior_train(args.hand_batch, args.repeats)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
