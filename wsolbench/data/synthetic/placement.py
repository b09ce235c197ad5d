"""The object's layout, shared by the dataset and the caption pairs: the head on the body's
boundary, the placement that keeps body ∪ head inside the image, the body's pixels and the
supersampled head.

Each function draws from the random stream in a fixed order, so the dataset
(:mod:`~wsolbench.data.synthetic.render`) and the pairs (:mod:`~wsolbench.data.synthetic.captions`)
keep drawing byte-identical images with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wsolbench.data.synthetic.draw import boundary_distance, inside_polygon, local_frame
from wsolbench.data.synthetic.style import MIN_HEAD_RADIUS_PX, PATTERN_INK


def head_on_boundary(
    rng: np.random.Generator,
    poly: np.ndarray | None,
    a: float,
    b: float,
    length: float,
    radius: tuple[float, float],
) -> tuple[float, np.ndarray]:
    """The head's radius (pixels, at least :data:`MIN_HEAD_RADIUS_PX`; ``radius`` is its range as
    a fraction of the body ``length``) and its centre [2] in the object frame: on the boundary of
    the body (semi-axes ``a``, ``b``; polygon ``poly`` or an ellipse), near a random end of the
    major axis, as an animal's head is."""
    head_r = max(MIN_HEAD_RADIUS_PX, rng.uniform(*radius) * length)
    angle = rng.uniform(-0.35, 0.35) + (math.pi if rng.random() < 0.5 else 0.0)
    direction = np.array([math.cos(angle), math.sin(angle)])
    return head_r, direction * boundary_distance(poly, a, b, direction)


def place_object(
    rng: np.random.Generator,
    size: int,
    body: tuple[float, float, float, np.ndarray | None],
    head_uv: np.ndarray,
    head_r: float,
) -> tuple[float, float, float, float]:
    """Where the object goes: ``(cx, cy, hx, hy)``, the body's centre in image pixels and the
    head's offset from it in image axes, uniform among the positions that keep body ∪ head one
    pixel inside the image (a box touching the border would be ambiguous).

    Args:
        size: the image side, pixels.
        body: ``(a, b, rotation, poly)``: semi-axes, rotation (radians) and polygon or None.
        head_uv: [2] the head's centre in the object frame; ``head_r`` its radius.
    """
    a, b, rotation, poly = body
    c, s = math.cos(rotation), math.sin(rotation)
    if poly is None:
        half_w, half_h = math.hypot(a * c, b * s), math.hypot(a * s, b * c)
        extent = (-half_w, half_w, -half_h, half_h)
    else:
        px = c * poly[:, 0] - s * poly[:, 1]
        py = s * poly[:, 0] + c * poly[:, 1]
        extent = (px.min(), px.max(), py.min(), py.max())
    hx = c * head_uv[0] - s * head_uv[1]
    hy = s * head_uv[0] + c * head_uv[1]
    x_lo, x_hi = min(extent[0], hx - head_r), max(extent[1], hx + head_r)
    y_lo, y_hi = min(extent[2], hy - head_r), max(extent[3], hy + head_r)
    cx = rng.uniform(1 - x_lo, max(1 - x_lo, size - 2 - x_hi))
    cy = rng.uniform(1 - y_lo, max(1 - y_lo, size - 2 - y_hi))
    return cx, cy, hx, hy


def body_mask(
    u: np.ndarray, v: np.ndarray, a: float, b: float, poly: np.ndarray | None
) -> np.ndarray:
    """Bool mask of the body at object-frame points (u, v): the ellipse (a, b) or ``poly``."""
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0 if poly is None else inside_polygon(u, v, poly)


def draw_head(
    rng: np.random.Generator,
    image: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    centre: tuple[float, float],
    head_r: float,
    colour: np.ndarray,
    ink: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
) -> np.ndarray:
    """Paint the head disc into ``image`` [S, S, 3] (float, 0..255) and return its [S, S] mask.

    The pattern ``ink(u, v, r)`` (bool coverage at head-frame points) is supersampled 4 × 4 per
    pixel: at a 4-px radius, point sampling turns dots into noise. Its frame is jittered by half
    a pixel and turned at random, so no two heads of a class are pixel-identical.

    Args:
        grid: ``(xx, yy)`` [S, S] pixel coordinates.
        centre: the head's centre in image pixels; ``head_r`` its radius.
        colour: [3] RGB of the head; the ink is :data:`PATTERN_INK`.
    """
    xx, yy = grid
    head = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= head_r**2
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    su, sv = np.meshgrid(sub, sub)
    hu, hv = local_frame(
        xx[head][:, None] + su.ravel(),
        yy[head][:, None] + sv.ravel(),
        centre[0] + rng.uniform(-0.5, 0.5),
        centre[1] + rng.uniform(-0.5, 0.5),
        rng.uniform(0, math.pi),
    )
    coverage = ink(hu, hv, head_r).mean(axis=1)
    image[head] = colour + (PATTERN_INK - colour) * coverage[:, None]
    return head
