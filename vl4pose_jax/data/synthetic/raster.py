"""The synthetic sets' rasteriser: antialiased capsules, ellipses, convex polygons and rectangles.

Pure numpy on float32 images, each shape touching only its bounding box (no loops over pixels).
`Canvas` paints an RGB image (planar, channels first) and, while `labelling`, records which
shape is on top at each pixel and which human joints each shape contains, so the people
generator (`people`) can tell occluded joints exactly; `bbox` and `segment_geometry` also serve
the hand generator's depth z-buffer (`hands`). Pixel centres are at integer coordinates.
"""
from __future__ import annotations

import functools
import math

import numpy as np


@functools.lru_cache(maxsize=16)
def arange(n: int) -> np.ndarray:
    """(n,) float32 0, 1, ..., n - 1, cached and read-only (pixel coordinates)."""
    a = np.arange(n, dtype=np.float32)
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=32)
def _interp_matrix(n: int, k: int) -> np.ndarray:
    """(n, k) bilinear weights that upsample k control values to n samples."""
    pos = (np.arange(n) + 0.5) * (k - 1) / n
    lo = np.minimum(np.floor(pos).astype(int), k - 2)
    frac = pos - lo
    m = np.zeros((n, k), np.float32)
    m[np.arange(n), lo] = 1 - frac
    m[np.arange(n), lo + 1] = frac
    m.setflags(write=False)
    return m


def upsample_grid(grid_CxKxK: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(C, rows, cols) float32 bilinear upsampling of a (C, k, k) grid of control values."""
    k = grid_CxKxK.shape[1]
    my, mx = _interp_matrix(rows, k), _interp_matrix(cols, k)
    return my @ (grid_CxKxK.astype(np.float32) @ mx.T)


def smooth_field(rng, rows: int, cols: int, k: int, channels: int = 1) -> np.ndarray:
    """(channels, rows, cols) smooth random field in about [-1, 1] (bilinear k x k grid)."""
    return upsample_grid(rng.uniform(-1.0, 1.0, (channels, k, k)), rows, cols)


def bbox(xmin, xmax, ymin, ymax, rows, cols):
    """(y0, y1, x0, x1): the pixels covering [xmin, xmax] x [ymin, ymax] inside a rows x cols
    image (end exclusive), or None when none is inside."""
    x0, x1 = max(int(math.floor(xmin)), 0), min(int(math.ceil(xmax)) + 1, cols)
    y0, y1 = max(int(math.floor(ymin)), 0), min(int(math.ceil(ymax)) + 1, rows)
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def segment_geometry(ax, ay, bx, by, box):
    """Per pixel of `box`: offset (ex, ey) from the closest point of segment AB, and t."""
    y0, y1, x0, x1 = box
    ax, ay = float(ax), float(ay)  # Python floats keep the float32 arrays float32
    px = arange(x1)[x0:] - ax
    py = (arange(y1)[y0:] - ay)[:, None]
    dx, dy = float(bx) - ax, float(by) - ay
    l2 = dx * dx + dy * dy
    if l2 > 1e-12:
        t = px * (dx / l2) + py * (dy / l2)
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
    else:
        t = np.zeros((y1 - y0, x1 - x0), np.float32)
    return px - t * dx, py - t * dy, t


class Canvas:
    """An RGB float image (planar: channels first, so per-row loops are long) plus a label
    buffer (the id of the shape on top at each pixel)."""

    def __init__(self, image_3xSxS):
        self.image = image_3xSxS  # float32 (3, S, S), 0..255
        self.size = image_3xSxS.shape[1]
        self.labels = np.zeros(image_3xSxS.shape[1:], np.int16)
        self.joints_of = [0]  # bit mask of the human joints each shape contains; 0 = background
        self.labelling = False  # background shapes stay label 0

    def paint(self, box, alpha, colour, joints_mask=0, weight=None):
        """Blend `colour` ((h, w, 3) or (3,)) times `weight` (h, w) into `box` with `alpha`
        (h, w) or None (opaque); label pixels with alpha >= 0.5 when labelling."""
        y0, y1, x0, x1 = box
        region = self.image[:, y0:y1, x0:x1]
        colour = colour.reshape(-1, 1, 1) if colour.ndim == 1 else colour
        if alpha is None:
            region[...] = colour if weight is None else weight * colour
        else:
            region *= 1.0 - alpha
            region += (alpha if weight is None else alpha * weight) * colour
        if not self.labelling:
            return 0
        shape_id = len(self.joints_of)
        self.joints_of.append(joints_mask)
        if alpha is None:
            self.labels[y0:y1, x0:x1] = shape_id
        else:
            self.labels[y0:y1, x0:x1][alpha >= 0.5] = shape_id
        return shape_id

    def capsule(self, a, b, radius, colour, joints_mask=0):
        """All pixels within `radius` of segment ab, antialiased, shaded like a cylinder."""
        s = self.size
        r = max(float(radius), 1.0)
        box = bbox(min(a[0], b[0]) - r - 1, max(a[0], b[0]) + r + 1,
                    min(a[1], b[1]) - r - 1, max(a[1], b[1]) + r + 1, s, s)
        if box is None:
            return None
        ex, ey, _ = segment_geometry(a[0], a[1], b[0], b[1], box)
        u = ex * ex
        u += ey * ey
        u *= -1.0 / (r * r)
        u += 1.0  # 1 - (d / r)^2
        # Coverage (r^2 - d^2) / 2r + 1/2 ~ r - d + 1/2 near the rim.
        alpha = u * (0.5 * r)
        alpha += 0.5
        np.maximum(alpha, 0.0, out=alpha)
        np.minimum(alpha, 1.0, out=alpha)
        np.maximum(u, 0.0, out=u)
        np.sqrt(u, out=u)
        u *= 0.45
        u += 0.6  # bright on the axis, darker at the rim
        return self.paint(box, alpha, np.asarray(colour, np.float32), joints_mask, weight=u)

    def ellipse(self, centre, axis_angle, semi_a, semi_b, colour, joints_mask=0, hard=False,
                top_colour=None, shaded=True):
        """Ellipse with semi-axes semi_a along direction axis_angle (radians) and semi_b across.

        `hard`: no antialiasing (alpha 0 or 1). With `top_colour`, the part towards +axis
        beyond about 0.15 semi_a gets that colour (hair).
        """
        s = self.size
        semi_a, semi_b = max(float(semi_a), 1.0), max(float(semi_b), 1.0)
        ext = max(semi_a, semi_b) + 1
        box = bbox(centre[0] - ext, centre[0] + ext, centre[1] - ext, centre[1] + ext, s, s)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        px = arange(x1)[x0:] - float(centre[0])
        py = (arange(y1)[y0:] - float(centre[1]))[:, None]
        c, sn = math.cos(axis_angle), math.sin(axis_angle)
        ua = px * (c / semi_a) + py * (sn / semi_a)
        ub = py * (c / semi_b) - px * (sn / semi_b)
        q2 = ua * ua
        q2 += ub * ub
        if hard:
            alpha = (q2 <= 1.0).astype(np.float32)
        else:
            alpha = (1.0 - np.sqrt(q2)) * min(semi_a, semi_b) + 0.5
            np.maximum(alpha, 0.0, out=alpha)
            np.minimum(alpha, 1.0, out=alpha)
        col = np.asarray(colour, np.float32)
        if top_colour is not None:
            w = np.clip((ua - 0.15) * 6.0, 0.0, 1.0)
            top = np.asarray(top_colour, np.float32)
            col = col[:, None, None] + w * (top - col)[:, None, None]
        weight = None
        if shaded:
            weight = 1.0 - q2
            np.maximum(weight, 0.0, out=weight)
            np.sqrt(weight, out=weight)
            weight *= 0.4
            weight += 0.6
        return self.paint(box, alpha, col, joints_mask, weight)

    def polygon(self, points, pad, colour, joints_mask=0):
        """Convex hull of `points` (N, 2), grown by `pad` pixels, shaded towards its rim."""
        pts = _convex_hull(np.asarray(points, np.float64))
        s = self.size
        if len(pts) < 3:
            return None
        box = bbox(pts[:, 0].min() - pad - 1, pts[:, 0].max() + pad + 1,
                    pts[:, 1].min() - pad - 1, pts[:, 1].max() + pad + 1, s, s)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        px = arange(x1)[x0:]
        py = arange(y1)[y0:][:, None]
        sd = None
        for i in range(len(pts)):
            (ax, ay), (bx, by) = pts[i], pts[(i + 1) % len(pts)]
            length = math.hypot(bx - ax, by - ay)
            if length < 1e-9:
                continue
            nx, ny = -(by - ay) / length, (bx - ax) / length  # inward (left) normal
            d = (px - float(ax)) * nx + (py - float(ay)) * ny
            sd = d if sd is None else np.minimum(sd, d)
        if sd is None:
            return None
        sd += pad
        alpha = np.clip(sd + 0.5, 0.0, 1.0)
        depth = max(float(sd.max()), 1.0)
        shade = 0.62 + 0.38 * np.sqrt(np.clip(sd * (2.0 / depth), 0.0, 1.0))
        return self.paint(box, alpha, np.asarray(colour, np.float32), joints_mask, shade)

    def rect(self, x0, y0, x1, y1, colour, joints_mask=0, gradient=0.0):
        """Opaque axis-aligned rectangle of pixels x0 <= x <= x1 - 1, y0 <= y <= y1 - 1."""
        s = self.size
        box = bbox(x0, x1 - 1, y0, y1 - 1, s, s)
        if box is None:
            return None
        weight = None
        if gradient:
            by0, by1, bx0, bx1 = box
            weight = np.broadcast_to(
                1.0 + gradient * np.linspace(-1, 1, by1 - by0, dtype=np.float32)[:, None],
                (by1 - by0, bx1 - bx0))
        return self.paint(box, None, np.asarray(colour, np.float32), joints_mask, weight)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain), vertices in positive-area order."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return np.asarray(pts, np.float64).reshape(-1, 2)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    # Positive signed area in (x, y): the interior is left of each edge, (-dy, dx) points in.
    return np.asarray(lower[:-1] + upper[:-1], np.float64)
