"""Can a pose network learn the synthetic rare poses from ~100 labelled examples?

On the `families` config of synthetic_human, per seed: the CPU regime's model ('small'
hourglass: 128 px input, 32 x 32 heatmaps; batch 16, Adam 3e-3) trained from scratch on the
seed's 200 in-distribution initial labelled people alone, then, from the same initialisation
and data seed, on those plus `--rare` rare poses drawn at random from the pool; both for the
same number of epochs (`--epochs`: 120 are 1,440 steps on 200 people, 2,160 on 300). Appends
one JSON line per training to `--out`: test PCK@0.2 overall, per OOD kind and per rare-pose
family (`synthetic.rare_pose_family`), and the training's steps and seconds.

    python studies/learnability/check.py --seeds=0,1,2 --epochs=120 --out=results.jsonl
"""
import json
import time

import numpy as np
from absl import app, flags

from vl4pose_jax import evaluation, fit, nets, protocol, records
from vl4pose_jax.data import OOD_KINDS, synthetic

flags.DEFINE_list("seeds", ["0"], "Seeds: each draws its initial set, rare poses and weights.")
flags.DEFINE_integer("epochs", 120, "Epochs of every training.")
flags.DEFINE_integer("rare", 100, "Rare poses from the pool added to the initial set.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (the set builds on first use).")
flags.DEFINE_string("out", None, "JSON lines file the rows are appended to.")
flags.mark_flag_as_required("out")
FLAGS = flags.FLAGS


def rare_from_pool(seed: int, d: records.Data, count: int) -> np.ndarray:
    """`count` random pool records of kind 'rare_pose' (record indices of `d.source`)."""
    pool = np.arange(d.pool_start, len(d.source))
    rare = pool[d.ood_N[pool] == OOD_KINDS.index("rare_pose")]
    return np.sort(np.random.default_rng([seed, 17]).permutation(rare)[:count])


def families_of_test(d: records.Data) -> np.ndarray:
    """The rare-pose family of every test record ('' for the other kinds), from its id
    ('test:synthetic_human/<generator seed>/<index>')."""
    out = []
    for record_id, ood in zip(d.test.ids(), records.read_field(d.test, "ood")):
        _, seed, index = record_id.split(":", 1)[1].split("/")
        rare = int(np.asarray(ood)) == OOD_KINDS.index("rare_pose")
        out.append(synthetic.rare_pose_family(int(seed), int(index)) if rare else "")
    return np.asarray(out)


def train_and_evaluate(config, d, labelled_N, families_T, name):
    n = nets.nets_for(config, "random")
    start = time.time()
    state = n.init(protocol.round_key(config.seed, 0, "init"))
    state = fit.fit(config, d, n, state, labelled_N, config.epochs, 0, name)
    seconds = time.time() - start
    p = evaluation.predict_test(config, d, n, state)
    row = evaluation.evaluate(config, d, n, state, p)
    fam = families_T[p.index]
    steps = config.epochs * (len(labelled_N) // config.batch_size)
    return {"seed": config.seed, "labelled": name, "num_labelled": len(labelled_N),
            "epochs": config.epochs, "steps": steps, "seconds_train": round(seconds, 1),
            "pck@0.2": row["metrics"]["pck@0.2"],
            **{k: v["pck@0.2"] for k, v in row["metrics_by_kind"].items()},
            "rare_pose_by_family": {f: round(evaluation.accuracy(config, p, rows=fam == f)[0], 6)
                                    for f in synthetic.FAMILIES}}


def main(argv):
    del argv
    for seed in map(int, FLAGS.seeds):
        config = protocol.Config(
            dataset="synthetic_human", data_config="families", data_dir=FLAGS.data_dir,
            methods=("random",), seed=seed, init_size=200, budget=FLAGS.rare, rounds=1,
            epochs=FLAGS.epochs, preset="small", batch_size=16, lr=3e-3, progress=False)
        d = records.validate(config)
        init = records.initial_labelled(config, d)
        rare = rare_from_pool(seed, d, FLAGS.rare)
        families_T = families_of_test(d)
        for name, labelled in (("initial", init),
                               (f"initial+{len(rare)}_rare", np.concatenate([init, rare]))):
            row = train_and_evaluate(config, d, labelled, families_T, name)
            with open(FLAGS.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    app.run(main)
