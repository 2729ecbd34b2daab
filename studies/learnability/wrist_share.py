"""How often does a wrist lie within the PCK@0.2 radius of its own shoulder?

For the synthetic_human configs 'small' (rare poses drawn 'extreme') and 'families': the share
of labelled wrists within 0.2 x the torso normaliser (the radius PCK@0.2 accepts) of the same
side's shoulder, per OOD kind, over the pool, test and validation records (the sets build on
first use). A wrist folded onto its shoulder is a pose no annotator could tell from a missing
forearm; in distribution it does not happen. Writes one JSON object to `--out`.

    python studies/learnability/wrist_share.py --out=wrist_share.json [--data_dir=...]
"""
import json

import numpy as np
from absl import app, flags

from vl4pose_jax import data, skeletons

flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_string("out", None, "The JSON file to write.")
flags.mark_flag_as_required("out")
FLAGS = flags.FLAGS
SIDES = [(skeletons.lsp14.index(s + "sho"), skeletons.lsp14.index(s + "wri")) for s in "lr"]


def shares(config: str) -> dict:
    near = {kind: [] for kind in data.OOD_KINDS}
    for split in ("pool", "test", "validation"):
        source = data.load("synthetic_human", split, data_dir=FLAGS.data_dir, config=config,
                           build_if_missing=True)
        for i in range(len(source)):
            r = source[i]
            for sho, wri in SIDES:
                if r["visibility"][sho] >= 0 and r["visibility"][wri] >= 0:
                    distance = np.linalg.norm(r["joints"][sho] - r["joints"][wri])
                    near[data.OOD_KINDS[int(r["ood"])]].append(
                        distance <= 0.2 * float(r["normalizer"]))
    return {kind: {"wrists": len(v), "share_near_shoulder": round(float(np.mean(v)), 4)}
            for kind, v in near.items()}


def main(argv):
    del argv
    result = {config: shares(config) for config in ("small", "families")}
    with open(FLAGS.out, "w", encoding="utf-8") as f:
        f.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
