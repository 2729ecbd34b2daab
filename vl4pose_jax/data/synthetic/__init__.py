"""Built-in synthetic pose datasets: rendered people (RGB) and hands (depth), pure numpy.

These are the default data when no real data is installed: the whole active-learning simulation
runs on them on a CPU, with no download (`synthetic_builders` stores them as TFDS sets). Every
example is a pure function of (seed, index, arguments), drawn from
`np.random.default_rng([seed, index, stream, ood code])`, so a builder or a data loader can make
example i alone (random access) and two calls give the same bytes. A fraction of each set is
out-of-distribution (OOD), flagged per example, so an AL simulator can measure whether a method
finds what the model has not seen:

  * 'none': in distribution;
  * 'rare_pose': a pose outside the normal range (people, `rare_poses='extreme'`: upside down,
    cartwheels, splits and limbs beyond the usual joint limits; `rare_poses='families'`:
    handstands, cartwheels, somersaults in pike and side-lying leg lifts with human joint
    angles; hands: palm facing away, fingers pointing down, hyperextended or over-flexed
    fingers);
  * 'appearance': a visual shift with an ordinary pose (people: greyscale, inverted colours or a
    high-frequency stripe texture; hands: heavy sensor noise, large holes, or a cluttered
    background close behind the hand). In-distribution examples never use these.

Usage::

    from vl4pose_jax.data import synthetic
    ex = synthetic.human_example(seed=0, index=7)            # one example, random access
    kinds = synthetic.assign_ood(1000, 0.1, seed=0)          # the OOD kind of each index
    for ex in synthetic.human_examples(0, 1000, ood_fraction=0.1):
        ex['image']        # uint8 (S, S, 3)
        ex['joints']       # float32 (14, 2) (x, y) = (column, row) pixels, lsp14 order
        ex['visibility']   # int8 (14,): 1 visible, 0 occluded, -1 absent
    hand = synthetic.hand_example(0, 3)
    hand['depth']          # uint16 (240, 320) mm, 0 = no reading; ICVL intrinsics
    hand['joints']         # float32 (16, 3) (u px, v px, d mm), icvl16 order

Modules: `sampling` (seeded streams, `assign_ood`), `raster` (the antialiased shape painter),
`people` (the human generator), `body` (its joint names and body proportions), `families` (its
rare-pose families), `hands` (the depth-hand generator; not to be confused with
`vl4pose_jax.data.hands`, the crop geometry of every hand dataset). This package re-exports the
generators' public names.

Conventions. Pixel centres are at integer coordinates (pixel (row i, column j) is centred on
x = j, y = i), as in `vl4pose_jax.heatmaps`. Humans use `skeletons.lsp14` ("l" = the person's
left; people face the camera, so an upright person's left side is on the image's right).
Hands use `skeletons.icvl16` and ICVL's camera (`HAND_INTRINSICS`, `HAND_IMAGE_SHAPE`); a joint's
d is the depth (camera z, mm) of its 3-D centre, not of the skin in front of it.

Human occlusion is exact: joint j is occluded (visibility 0) iff the shape on top at its pixel
(the pixel nearest the joint) is a shape drawn after j's first shape (the first body part
that contains j) and is not one of the parts that contain j (e.g. an occluder, or a forearm
crossing the other hip). All human joints lie inside the image with a margin; all hand joints
project inside the frame.

`pose=` renders a given pose instead of a sampled one (real annotations with synthetic
appearance). Humans: (14, 2) pixel positions at any scale, NaN rows = absent joints; they are
normalised by `normalise_human_pose` (bounding-box centre to the image centre, larger box
side scaled to `POSE_FILL` of the image) and absent joints come back as NaN with visibility -1.
Hands: (16, 3) uvd joints in ICVL's frame, rendered where they are and returned unchanged.
With `ood_kind='rare_pose'` a given pose is first turned (people: rotated by 150 to 210
degrees about its box centre; hands: turned 180 degrees about the vertical axis through the
palm, then shifted back into the frame if needed), so the returned joints differ from the input.
"""
from vl4pose_jax.data.spec import OOD_KINDS
from vl4pose_jax.data.synthetic.hands import (HAND_IMAGE_SHAPE, HAND_INTRINSICS, NUM_HAND_JOINTS,
                                              hand_example, hand_examples)
from vl4pose_jax.data.synthetic.families import FAMILIES
from vl4pose_jax.data.synthetic.people import (NUM_HUMAN_JOINTS, POSE_FILL, RARE_POSE_MODES,
                                               human_example, human_examples,
                                               normalise_human_pose, rare_pose_family)
from vl4pose_jax.data.synthetic.sampling import assign_ood
