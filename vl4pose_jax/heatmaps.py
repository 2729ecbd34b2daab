"""Heatmaps: Gaussian targets, decoding to joint positions, and local maxima on device.

Conventions: heatmaps are channels-last, `heatmaps_...xHxWxJ` (any leading batch axes);
positions are (x, y) = (column, row) in heatmap cells, cell centres at integers. Everything is
pure `jax.numpy`, works under `jax.jit` and `jax.vmap`, and never raises on flat, all-zero or
non-positive maps: such maps give masked, finite results.

Amplitude: targets peak at `DEFAULT_PEAK` = 30, as in the VL4Pose reference code (`hm_peak`).
The amplitude acts as the temperature of any softmax over raw heatmap values (VL4Pose's peak
probabilities, multi-peak entropy), so keep it fixed when comparing scores.

Local maxima follow `skimage.feature.peak_local_max`: a pixel is a peak when it equals the
maximum of its (2*min_distance+1)^2 window (no padding beyond the map), is strictly above the
map's minimum, and is not within `min_distance` cells of the border (when `exclude_border`);
peaks are ranked by value (ties in raster order), and a peak within `min_distance` (Chebyshev)
of a higher-ranked kept peak is dropped. That last rule only acts on plateaus of equal values,
where skimage's own spacing pass (batched KD-tree queries) can keep a different subset: results
match skimage exactly on maps without ties, and may differ on plateaus. `min_distance` and
`exclude_border` are cells of the given maps by default; with `reference_size=64` they are cells
of the papers' 64x64 maps, scaled by H/64 (`peak_spacing`: VL4Pose's 8 becomes 2 on 16x16 maps),
and a border that leaves no interior is refused with a ValueError.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

DEFAULT_SIGMA = 1.75
DEFAULT_PEAK = 30.0
# The papers' heatmap side: peak-finding distances (VL4Pose's min_distance 8, multi-peak
# entropy's 5) are given for maps of this size and scaled to others (`peak_spacing`).
REFERENCE_MAP_SIZE = 64


def gaussian_targets(joints_xy_BxJx2, visible_BxJ, height: int, width: int, *,
                     sigma: float = DEFAULT_SIGMA, peak: float = DEFAULT_PEAK):
    """Unnormalised Gaussian target maps, peak * exp(-d^2 / (2 sigma^2)).

    Args:
      joints_xy_BxJx2: (..., J, 2) joint positions (x, y) in heatmap cells (sub-cell precision).
      visible_BxJ: (..., J) mask; joints with 0 get an all-zero map.
      height, width: heatmap size in cells.
    Returns:
      heatmaps_BxHxWxJ: (..., H, W, J) float32 targets.
      exists_BxJ: (..., J) bool, visible and inside the map (the joints that have a target).
    """
    joints = jnp.asarray(joints_xy_BxJx2, jnp.float32)
    x, y = joints[..., 0], joints[..., 1]
    exists = (jnp.asarray(visible_BxJ) > 0) & jnp.isfinite(x) & jnp.isfinite(y)
    exists &= (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    xs = jnp.arange(width, dtype=jnp.float32)
    ys = jnp.arange(height, dtype=jnp.float32)
    dx2 = (xs - jnp.where(exists, x, 0.0)[..., None]) ** 2  # (..., J, W)
    dy2 = (ys - jnp.where(exists, y, 0.0)[..., None]) ** 2  # (..., J, H)
    maps_JxHxW = peak * jnp.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2.0 * sigma**2))
    maps_JxHxW = jnp.where(exists[..., None, None], maps_JxHxW, 0.0)
    return jnp.moveaxis(maps_JxHxW, -3, -1), exists


def argmax_xy(heatmaps_BxHxWxJ):
    """Integer (x, y) of each map's global maximum (first in raster order), (..., J, 2) int32."""
    maps = jnp.moveaxis(heatmaps_BxHxWxJ, -1, -3)
    width = maps.shape[-1]
    flat = jnp.argmax(maps.reshape(maps.shape[:-2] + (-1,)), axis=-1)
    return jnp.stack([flat % width, flat // width], axis=-1).astype(jnp.int32)


def decode(heatmaps_BxHxWxJ, *, window: int = 2):
    """Joint positions from heatmaps: argmax refined by a local weighted centroid.

    The centroid uses the map values clamped at 0 in a (2*window+1)^2 box around the argmax
    (clipped at the borders), as the reference's `weight_avg_centre`; if all those weights are
    0 (e.g. an all-zero or negative map) the integer argmax is returned.

    Returns:
      joints_xy_BxJx2: (..., J, 2) float32 (x, y) in heatmap cells.
      confidence_BxJ: (..., J) the map value at the argmax.
    """
    maps = jnp.moveaxis(jnp.asarray(heatmaps_BxHxWxJ, jnp.float32), -1, -3)  # (..., J, H, W)
    height, width = maps.shape[-2:]
    flat_maps = maps.reshape(maps.shape[:-2] + (height * width,))
    best_xy = argmax_xy(heatmaps_BxHxWxJ)
    offsets = jnp.arange(-window, window + 1)
    xs = best_xy[..., 0, None, None] + offsets[None, :]  # (..., J, 1, n)
    ys = best_xy[..., 1, None, None] + offsets[:, None]  # (..., J, n, 1)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    flat_idx = jnp.clip(ys, 0, height - 1) * width + jnp.clip(xs, 0, width - 1)
    values = jnp.take_along_axis(
        flat_maps, flat_idx.reshape(flat_idx.shape[:-2] + (-1,)), axis=-1).reshape(flat_idx.shape)
    weights = jnp.where(inside, jnp.maximum(values, 0.0), 0.0)
    total = weights.sum(axis=(-2, -1))
    safe_total = jnp.where(total > 0, total, 1.0)
    cx = (weights * xs).sum(axis=(-2, -1)) / safe_total
    cy = (weights * ys).sum(axis=(-2, -1)) / safe_total
    best = best_xy.astype(jnp.float32)
    joints = jnp.stack([jnp.where(total > 0, cx, best[..., 0]),
                        jnp.where(total > 0, cy, best[..., 1])], axis=-1)
    confidence = jnp.max(flat_maps, axis=-1)
    return joints, confidence


class Peaks(NamedTuple):
    """Local maxima per joint, best first. Invalid slots have xy = 0 and value = 0."""
    xy: jax.Array      # (..., J, K, 2) int32, (x, y) in heatmap cells
    values: jax.Array  # (..., J, K) heatmap value at the peak
    valid: jax.Array   # (..., J, K) bool


def scale_cells(cells: int, map_size: int, reference_size: int = REFERENCE_MAP_SIZE) -> int:
    """A distance given in cells of a `reference_size` map, for a map of `map_size` cells.

    cells * map_size / reference_size rounded half up, and at least 1 when `cells` >= 1 (0 stays
    0): min_distance 8 is 2 on 16x16 maps and 4 on 32x32; 5 is 1 on 16x16 and 3 on 32x32.
    """
    cells, map_size, reference_size = int(cells), int(map_size), int(reference_size)
    if cells < 0 or map_size < 1 or reference_size < 1:
        raise ValueError(f"scale_cells needs cells >= 0 and positive sizes, got cells={cells}, "
                         f"map_size={map_size}, reference_size={reference_size}")
    if cells == 0:
        return 0
    return max(1, (2 * cells * map_size + reference_size) // (2 * reference_size))


def peak_spacing(height: int, width: int, *, min_distance: int,
                 exclude_border: bool | int = True,
                 reference_size: int | None = None) -> tuple[int, int]:
    """(min_distance, border) in cells of an H x W map, checked to leave an interior.

    With `reference_size` (e.g. `REFERENCE_MAP_SIZE` = 64, the papers' maps), `min_distance` and
    an int `exclude_border` are in cells of a reference_size x reference_size map and are scaled
    by min(H, W) / reference_size (`scale_cells`); with None they are cells of this map. The
    border is the (scaled) min_distance when `exclude_border` is True, the (scaled) int when it
    is an int, 0 when False. Raises ValueError, naming the option, its value and the map size,
    when the border leaves no cell of the map eligible as a peak.
    """
    if int(min_distance) < 0 or (not isinstance(exclude_border, bool)
                                 and int(exclude_border) < 0):
        raise ValueError(f"min_distance and exclude_border must be >= 0, got "
                         f"min_distance={min_distance}, exclude_border={exclude_border}")
    side = min(int(height), int(width))

    def cells(value):
        return (int(value) if reference_size is None
                else scale_cells(value, side, reference_size))

    spacing = cells(min_distance)
    if isinstance(exclude_border, bool):
        border = spacing if exclude_border else 0
    else:
        border = cells(exclude_border)
    if 2 * border >= side:
        option = ("min_distance" if isinstance(exclude_border, bool) else "exclude_border")
        value = min_distance if option == "min_distance" else exclude_border
        scaled = ("" if reference_size is None else
                  f" (given for {reference_size}x{reference_size} maps, scaled to {border})")
        hint = ("" if reference_size is not None else
                f", or reference_size={REFERENCE_MAP_SIZE} to give it in cells of "
                f"{REFERENCE_MAP_SIZE}x{REFERENCE_MAP_SIZE} maps")
        also = " with exclude_border=True" if option == "min_distance" else ""
        raise ValueError(
            f"{option}={value}{scaled}{also} excludes {border} "
            f"cells at each border of {height}x{width} heatmaps, which leaves no interior cell "
            f"for a peak; use a smaller {option} or exclude_border=False{hint}")
    return spacing, border


def local_maxima(heatmaps_BxHxWxJ, num_peaks: int, *, min_distance: int = 8,
                 exclude_border: bool | int = True, max_candidates: int | None = None,
                 reference_size: int | None = None) -> Peaks:
    """Up to `num_peaks` local maxima per map, as `skimage.feature.peak_local_max` (module doc).

    Args:
      heatmaps_BxHxWxJ: (..., H, W, J) maps.
      num_peaks: K, the number of slots returned per joint.
      min_distance: half-width of the non-maximum-suppression window, in cells.
      exclude_border: True excludes `min_distance` cells at each border, an int that many,
        False none.
      max_candidates: peaks examined before plateau suppression (default max(8 K, 32), capped
        at the number of (min_distance + 1)^2 blocks, each of which holds one candidate).
      reference_size: None: `min_distance` and `exclude_border` are cells of these maps (as
        skimage); an int (e.g. 64): they are cells of reference_size x reference_size maps,
        scaled to these maps by `peak_spacing`.
    Raises ValueError when the border leaves no interior (`peak_spacing`).
    """
    if num_peaks < 1:
        raise ValueError(f"num_peaks must be >= 1, got {num_peaks}")
    maps = jnp.moveaxis(jnp.asarray(heatmaps_BxHxWxJ, jnp.float32), -1, -3)  # (..., J, H, W)
    height, width = maps.shape[-2:]
    min_distance, border = peak_spacing(height, width, min_distance=min_distance,
                                        exclude_border=exclude_border,
                                        reference_size=reference_size)
    size = 2 * min_distance + 1
    lead = maps.ndim - 2
    # Separable max pool (rows, then columns): identical to one size x size window and far
    # faster on XLA:CPU, whose 2-D reduce_window is slow.
    ones = (1,) * (lead + 2)
    pooled = jax.lax.reduce_window(maps, -jnp.inf, jax.lax.max, (1,) * lead + (1, size), ones,
                                   "SAME")
    pooled = jax.lax.reduce_window(pooled, -jnp.inf, jax.lax.max, (1,) * lead + (size, 1), ones,
                                   "SAME")
    is_max = maps == pooled
    trivial = jnp.all(is_max, axis=(-2, -1), keepdims=True)
    is_peak = is_max & ~trivial & (maps > jnp.min(maps, axis=(-2, -1), keepdims=True))
    if border > 0:
        rows = jnp.arange(height)[:, None]
        cols = jnp.arange(width)[None, :]
        interior = ((rows >= border) & (rows < height - border)
                    & (cols >= border) & (cols < width - border))
        is_peak &= interior

    scores = jnp.where(is_peak, maps, -jnp.inf)  # (..., J, H, W)
    block = min_distance + 1
    if block > 1:
        # Two window maxima closer than min_distance + 1 cells have equal values (a plateau),
        # and spacing keeps only the first of those, so each (min_distance + 1)^2 block holds at
        # most one candidate that matters: reduce blocks first, then rank far fewer cells.
        scores, flat_idx = _best_per_block(scores, block)
    else:
        flat_idx = jnp.broadcast_to(jnp.arange(height * width), scores.shape[:-2] + (-1,))
        scores = scores.reshape(flat_idx.shape)
    num_cand = min(scores.shape[-1], max_candidates or max(8 * num_peaks, 32))
    # Rank by value, ties in raster order (as skimage's stable sort).
    order = jnp.lexsort((flat_idx, -scores), axis=-1)[..., :num_cand]
    cand_values = jnp.take_along_axis(scores, order, axis=-1)
    cand_idx = jnp.take_along_axis(flat_idx, order, axis=-1)
    cand_valid = jnp.isfinite(cand_values)
    cand_x, cand_y = cand_idx % width, cand_idx // width

    # Greedy plateau suppression in rank order (exact skimage spacing rule for these candidates).
    if min_distance > 1 and num_cand > 1:
        close = ((jnp.abs(cand_x[..., :, None] - cand_x[..., None, :]) <= min_distance)
                 & (jnp.abs(cand_y[..., :, None] - cand_y[..., None, :]) <= min_distance))

        def body(i, keep):
            earlier = jnp.arange(num_cand) < i
            blocked = jnp.any(keep & earlier & close[..., i, :], axis=-1)
            return keep.at[..., i].set(keep[..., i] & ~blocked)

        cand_valid = jax.lax.fori_loop(1, num_cand, body, cand_valid)

    # Kept candidates first (stable, so rank order is preserved), then take K slots.
    order = jnp.argsort(~cand_valid, axis=-1, stable=True)
    take = order[..., :num_peaks]
    valid = jnp.take_along_axis(cand_valid, take, axis=-1)
    values = jnp.where(valid, jnp.take_along_axis(cand_values, take, axis=-1), 0.0)
    xs = jnp.where(valid, jnp.take_along_axis(cand_x, take, axis=-1), 0)
    ys = jnp.where(valid, jnp.take_along_axis(cand_y, take, axis=-1), 0)
    if num_peaks > num_cand:  # small maps: pad the slots that cannot hold a peak
        pad = [(0, 0)] * (valid.ndim - 1) + [(0, num_peaks - num_cand)]
        valid, values = jnp.pad(valid, pad), jnp.pad(values, pad)
        xs, ys = jnp.pad(xs, pad), jnp.pad(ys, pad)
    return Peaks(xy=jnp.stack([xs, ys], axis=-1).astype(jnp.int32), values=values, valid=valid)


def _best_per_block(scores_xHxW, block: int):
    """Best score of every block x block tile (first in raster order on ties) and its flat
    index in the H x W map: (..., num_blocks) each."""
    height, width = scores_xHxW.shape[-2:]
    rows, cols = -(-height // block), -(-width // block)
    pad = [(0, 0)] * (scores_xHxW.ndim - 2) + [(0, rows * block - height),
                                                (0, cols * block - width)]
    tiles = jnp.pad(scores_xHxW, pad, constant_values=-jnp.inf)
    tiles = tiles.reshape(tiles.shape[:-2] + (rows, block, cols, block))
    tiles = jnp.swapaxes(tiles, -3, -2).reshape(tiles.shape[:-4] + (rows * cols, block * block))
    best = jnp.argmax(tiles, axis=-1)
    values = jnp.take_along_axis(tiles, best[..., None], axis=-1)[..., 0]
    tile = jnp.arange(rows * cols)
    y = (tile // cols) * block + best // block
    x = (tile % cols) * block + best % block
    return values, y * width + x
