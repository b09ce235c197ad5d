"""Drawing primitives of the synthetic image model: noise, frames, shapes, background, patterns.

Elementwise NumPy arithmetic only (no interpolation kernels or SIMD transcendental functions per
pixel), so that a given random stream draws byte-identical images on every machine. Both the
dataset (:mod:`wsolbench.data.synthetic.render`) and the image-caption pairs
(:mod:`wsolbench.data.synthetic.captions`) draw with them.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np


def value_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    """Smooth noise: a random [cells+1, cells+1, C] lattice, smoothstep-interpolated to [S, S, C].

    Elementwise arithmetic only, so the result does not depend on an interpolation library's SIMD
    paths (byte-identical images across machines is the aim).
    """
    lattice = rng.normal(size=(cells + 1, cells + 1, channels))
    t = (np.arange(size) + 0.5) * (cells / size)
    i0 = t.astype(np.int64)
    f = t - i0
    s = f * f * (3.0 - 2.0 * f)  # smoothstep: continuous slope across cell borders
    rows = lattice[i0] * (1.0 - s)[:, None, None] + lattice[i0 + 1] * s[:, None, None]
    return rows[:, i0] * (1.0 - s)[None, :, None] + rows[:, i0 + 1] * s[None, :, None]


def local_frame(
    xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in a frame centred at (cx, cy) and rotated by ``angle`` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def ellipse(xx, yy, cx, cy, a, b, angle) -> np.ndarray:
    """Bool mask of the points (xx, yy) inside an ellipse: centre, semi-axes, rotation (rad)."""
    u, v = local_frame(xx, yy, cx, cy, angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def random_colour(rng: np.random.Generator, max_sat: float) -> np.ndarray:
    """[3] RGB in 0..255 of uniform hue, saturation in 0..max_sat and value in 0.25..0.95."""
    hsv = (rng.random(), rng.uniform(0.0, max_sat), rng.uniform(0.25, 0.95))
    return np.array(colorsys.hsv_to_rgb(*hsv)) * 255.0


def background(
    rng: np.random.Generator, size: int, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """[S, S, 3] float64 RGB in 0..255: smooth random colours plus class-free clutter blobs.

    Saturation stays moderate so that the background rarely looks like a head; brightness varies
    more than hue, as in natural scenes.
    """
    image = (
        random_colour(rng, 0.6)
        + 28.0 * value_noise(rng, size, 4, 1)
        + 14.0 * value_noise(rng, size, 4, 3)
        + 7.0 * value_noise(rng, size, 8, 3)
    )
    xx, yy = grid
    for _ in range(int(rng.integers(2, 6))):
        a = rng.uniform(0.02, 0.065) * size
        blob = ellipse(
            xx,
            yy,
            rng.uniform(0, size - 1),
            rng.uniform(0, size - 1),
            a,
            a * rng.uniform(0.4, 1.0),
            rng.uniform(0, math.pi),
        )
        image[blob] = random_colour(rng, 0.7)
    return image


def body_shape(rng: np.random.Generator, a: float, b: float) -> np.ndarray | None:
    """None for an ellipse, else [n, 2] vertices (object frame, counter-clockwise) of a polygon.

    The vertices lie on the ellipse in angular order, so the polygon is convex and inscribed in it.
    """
    if rng.random() < 0.5:
        return None
    return inscribed_polygon(rng, a, b, int(rng.integers(5, 9)), jitter=0.3)


def inscribed_polygon(
    rng: np.random.Generator, a: float, b: float, n: int, jitter: float
) -> np.ndarray:
    """[n, 2] counter-clockwise vertices on the ellipse (a, b), in angular order (so convex): a
    random start, then n steps of 2π/n, each moved by up to ``jitter`` of a step."""
    start = rng.uniform(0, 2 * math.pi)
    t = start + 2 * math.pi * (np.arange(n) + rng.uniform(-jitter, jitter, size=n)) / n
    return np.stack([a * np.cos(t), b * np.sin(t)], axis=1)


def boundary_distance(poly: np.ndarray | None, a: float, b: float, direction: np.ndarray) -> float:
    """Distance from the body centre to its boundary along the unit ``direction`` (object frame)."""
    dx, dy = float(direction[0]), float(direction[1])
    if poly is None:
        return 1.0 / math.sqrt((dx / a) ** 2 + (dy / b) ** 2)
    # Convex polygon around the origin: the ray leaves through the nearest edge it heads out of.
    p, q = poly, np.roll(poly, -1, axis=0)
    normal = np.stack([q[:, 1] - p[:, 1], p[:, 0] - q[:, 0]], axis=1)  # outward for CCW vertices
    offset = (normal * p).sum(axis=1)
    speed = normal @ np.array([dx, dy])
    return float(np.min(offset[speed > 0] / speed[speed > 0]))


def inside_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Bool mask of the points (u, v) inside a convex polygon ([n, 2], counter-clockwise)."""
    inside = np.ones(u.shape, dtype=bool)
    for (px, py), (qx, qy) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        inside &= (qx - px) * (v - py) - (qy - py) * (u - px) >= 0
    return inside


def head_pattern(pattern: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Ink coverage (bool) of a head pattern at head-frame points (u, v), head radius ``r``."""
    if pattern == "dotted":
        cell = 0.8 * r
        du = np.mod(u, cell) - cell / 2
        dv = np.mod(v, cell) - cell / 2
        return du * du + dv * dv <= (0.3 * cell) ** 2
    if pattern == "ringed":
        rho2 = (u * u + v * v) / (r * r)
        # Target: ink ring in the middle, plus a small ink centre dot.
        return ((rho2 >= 0.42**2) & (rho2 <= 0.72**2)) | (rho2 <= 0.18**2)
    if pattern == "checkered":
        cell = 0.55 * r
        return (np.floor(u / cell) + np.floor(v / cell)) % 2 == 1
    return np.zeros(u.shape, dtype=bool)  # solid
