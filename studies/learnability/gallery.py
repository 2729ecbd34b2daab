"""A picture of the rare-pose families: one row per family (`synthetic.FAMILIES`), the first
four rare-pose people of that family in the families config's test split, 128 px, with their
skeletons (the person's left side red, right side blue).

    python studies/learnability/gallery.py --out=studies/learnability/families.png
"""
import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from vl4pose_jax import skeletons
from vl4pose_jax.data import synthetic
from vl4pose_jax.data.synthetic_builders import CONFIGS, generator_seed

flags.DEFINE_string("out", None, "The PNG to write.")
flags.mark_flag_as_required("out")
FLAGS = flags.FLAGS
PER_FAMILY, SIZE = 4, 128


def draw(example) -> Image.Image:
    image = Image.fromarray(example["image"])
    pen = ImageDraw.Draw(image)
    joints = example["joints"]
    for a, b in skeletons.lsp14.links:
        pen.line([tuple(joints[a]), tuple(joints[b])], fill=(255, 255, 0), width=1)
    for name, (x, y) in zip(skeletons.lsp14.names, joints):
        colour = (255, 0, 0) if name.startswith("l") else (0, 128, 255)
        pen.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=colour)
    return image


def main(argv):
    del argv
    config = {c.name: c for c in CONFIGS}["families"]
    seed = generator_seed("test", config.seed)
    kinds = synthetic.assign_ood(config.num_test, config.ood_fraction, seed)
    rare = np.flatnonzero(kinds == "rare_pose")
    by_family = {f: [i for i in rare if synthetic.rare_pose_family(seed, i) == f][:PER_FAMILY]
                 for f in synthetic.FAMILIES}
    sheet = Image.new("RGB", (PER_FAMILY * SIZE, len(by_family) * SIZE))
    for row, (family, indices) in enumerate(by_family.items()):
        for col, i in enumerate(indices):
            example = synthetic.human_example(seed, i, image_size=SIZE, ood_kind="rare_pose",
                                              rare_poses="families")
            tile = draw(example)
            if col == 0:
                ImageDraw.Draw(tile).text((3, 2), family, fill=(255, 255, 255))
            sheet.paste(tile, (col * SIZE, row * SIZE))
    sheet.save(FLAGS.out)


if __name__ == "__main__":
    app.run(main)
