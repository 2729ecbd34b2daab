"""Heatmap targets, decoding and local maxima (against float64 numpy brute force)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from vl4pose_jax import heatmaps


def brute_force_maxima(m, min_distance, num_peaks, exclude_border):
    """float64 numpy reference: window maxima above the minimum, away from the border, best first."""
    m = np.asarray(m, np.float64)
    height, width = m.shape
    peaks = []
    for r in range(height):
        for c in range(width):
            window = m[max(0, r - min_distance):r + min_distance + 1,
                       max(0, c - min_distance):c + min_distance + 1]
            border = min_distance if exclude_border else 0
            inside = border <= r < height - border and border <= c < width - border
            if inside and m[r, c] == window.max() and m[r, c] > m.min():
                peaks.append((-m[r, c], r, c))
    peaks.sort()
    return [(c, r) for _, r, c in peaks[:num_peaks]]


@pytest.mark.parametrize("seed", range(6))
def test_local_maxima_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    maps = ndimage.gaussian_filter(rng.normal(size=(3, 24, 20)), (0, 1.2, 1.2))  # J x H x W
    min_distance, num_peaks = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    exclude = bool(seed % 2)
    peaks = heatmaps.local_maxima(jnp.asarray(np.moveaxis(maps, 0, -1)[None]), num_peaks,
                                  min_distance=min_distance, exclude_border=exclude)
    for j in range(3):
        expected = brute_force_maxima(maps[j], min_distance, num_peaks, exclude)
        valid = np.asarray(peaks.valid[0, j])
        got = [tuple(p) for p in np.asarray(peaks.xy[0, j])[valid]]
        assert got == expected
        np.testing.assert_allclose(np.asarray(peaks.values[0, j])[valid],
                                   [maps[j][r, c] for c, r in expected], rtol=1e-6)
        assert not valid[len(expected):].any()


def test_local_maxima_flat_and_zero_maps_are_masked_and_finite():
    for maps in (jnp.zeros((2, 16, 16, 3)), jnp.full((2, 16, 16, 3), 7.0)):
        peaks = jax.jit(lambda m: heatmaps.local_maxima(m, 4, min_distance=2))(maps)
        assert not bool(peaks.valid.any())
        assert bool(jnp.isfinite(peaks.values).all())
        assert peaks.xy.shape == (2, 3, 4, 2)


def test_plateau_gives_one_peak():
    m = np.zeros((16, 16))
    m[7:9, 7:9] = 1.0  # a 2x2 plateau: skimage keeps one peak (first in raster order)
    peaks = heatmaps.local_maxima(jnp.asarray(m)[..., None], 3, min_distance=3)
    assert np.asarray(peaks.valid[0]).tolist() == [True, False, False]
    assert np.asarray(peaks.xy[0, 0]).tolist() == [7, 7]


def test_gaussian_targets_and_decode_round_trip():
    joints = np.array([[[10.3, 20.7], [5.0, 5.0], [40.0, 3.0], [31.6, 12.2]]], np.float32)
    visible = np.array([[1, 0, 1, 1]])
    maps, exists = heatmaps.gaussian_targets(joints, visible, 32, 36, sigma=1.75, peak=30.0)
    assert maps.shape == (1, 32, 36, 4)
    assert np.asarray(exists).tolist() == [[True, False, False, True]]  # joint 2 is off the map
    assert float(jnp.abs(maps[0, ..., 1]).max()) == 0.0
    # float64 value at one cell
    expected = 30.0 * np.exp(-((12 - 31.6) ** 2 + (9 - 12.2) ** 2) / (2 * 1.75**2))
    assert float(maps[0, 9, 12, 3]) == pytest.approx(expected, rel=1e-5)
    decoded, confidence = heatmaps.decode(maps)
    # The centroid in a +-2 window is pulled towards the argmax cell, by at most half a cell.
    np.testing.assert_array_less(np.abs(np.asarray(decoded)[0, [0, 3]] - joints[0, [0, 3]]), 0.5)
    assert float(confidence[0, 0]) == pytest.approx(float(maps[0].max(axis=(0, 1))[0]))


def test_decode_of_zero_map_is_finite():
    decoded, confidence = heatmaps.decode(jnp.zeros((2, 8, 8, 3)))
    assert bool(jnp.isfinite(decoded).all()) and float(jnp.abs(confidence).max()) == 0.0


def test_peak_spacing_scales_from_64_cells_and_refuses_empty_interiors():
    """Distances given for the papers' 64x64 maps scale by H/64 (rounded half up, >= 1); a
    border that leaves no interior is a ValueError naming the option, its value and the size."""
    assert [heatmaps.scale_cells(8, s) for s in (8, 16, 32, 64, 128)] == [1, 2, 4, 8, 16]
    assert [heatmaps.scale_cells(5, s) for s in (8, 16, 32, 64)] == [1, 1, 3, 5]
    assert heatmaps.scale_cells(0, 16) == 0
    assert heatmaps.peak_spacing(16, 16, min_distance=8, reference_size=64) == (2, 2)
    assert heatmaps.peak_spacing(32, 32, min_distance=5, exclude_border=False,
                                 reference_size=64) == (3, 0)
    assert heatmaps.peak_spacing(32, 32, min_distance=8, exclude_border=6,
                                 reference_size=64) == (4, 3)
    assert heatmaps.peak_spacing(16, 16, min_distance=3) == (3, 3)  # literal cells
    with pytest.raises(ValueError, match=r"min_distance=8 .*16x16"):
        heatmaps.local_maxima(jnp.zeros((16, 16, 2)), 3, min_distance=8)
    with pytest.raises(ValueError, match=r"exclude_border=40 .*16x16"):
        heatmaps.local_maxima(jnp.zeros((16, 16, 2)), 3, min_distance=8, exclude_border=40,
                              reference_size=64)
    # The scaled setting finds a bump 3 cells from the border of a 16x16 map (8 = 2 cells).
    m = np.zeros((16, 16, 1), np.float32)
    m[3, 12, 0], m[9, 6, 0] = 5.0, 4.0
    peaks = heatmaps.local_maxima(jnp.asarray(m), 3, min_distance=8, reference_size=64)
    assert np.asarray(peaks.xy[0, :2]).tolist() == [[12, 3], [6, 9]]
    assert np.asarray(peaks.valid[0]).tolist() == [True, True, False]
