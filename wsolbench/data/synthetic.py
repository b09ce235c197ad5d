"""The built-in ``synthetic`` dataset: the central WSOL failure in miniature.

Every image holds one object on a cluttered background. The object is a large convex-ish **body**
(an ellipse or a convex polygon) with a small **head** (a disc) on its boundary. The ground truth —
box and mask — covers body ∪ head, but almost all the class evidence sits in the head, so a
classifier's CAM peaks on the head and misses most of the body: the "only the discriminative part"
error of real WSOL, measurable in seconds on a CPU. See ``shared/spec/synthetic.md``.

Image model (all sizes scale with ``image_size``; numbers below are for the default 96 px):

* **Background**: smooth value noise (two octaves, 4 and 8 cells across) around a random base
  colour, plus 2–5 small clutter ellipses of random colour, size and position. Clutter is drawn
  independently of the class, so it carries no class information.
* **Body**: length (major axis) uniform in 35–75 % of the image side, aspect 0.5–0.8, random
  rotation, position uniform among those that keep the whole object (head included) at least one
  pixel inside the image. Texture: oriented stripes (random angle, period and phase) in a grey-brown
  palette shared by all classes. The hue carries a WEAK class cue: its mean moves with the class
  over 15°–45° (:data:`BODY_HUE_RANGE`), its per-image spread (:data:`BODY_HUE_SPREAD`, σ = 8°) is
  several times the gap between classes, so the body alone is a poor classifier.
* **Head**: a disc of radius 8–10 % of the body length (at least 4 px, so its pattern renders)
  centred on the body's boundary near one end of the major axis — far from most of the body, as an
  animal's head is. Its colour (:data:`HEAD_COLOURS`) and pattern (:data:`HEAD_PATTERNS`: dotted,
  ringed, checkered, solid) decide the class: the STRONG cue.

Class → (colour, pattern) is a Latin-square walk over 5 colours × 4 patterns (:func:`head_style`):
class ``k`` takes colour ``k mod 5`` and pattern ``(k mod 5 + k // 5) mod 4``. Each block of five
classes uses every colour once, and each new block shifts the patterns by one, so a colour never
repeats its pattern. With 10 or more classes (the default is 10) every colour occurs in at least two
classes and every pattern in at least two: neither colour nor pattern alone decides the class, only
their conjunction does — the classifier must look at the head itself. At most 20 classes exist.
Class names (:func:`class_names`) are prefixes of one fixed list, so
``protocols/classnames/synthetic.txt`` holds the default 10 and each generated root its own
``classnames.txt``.

Ground truth: the mask is body ∪ head rasterized at pixel centres; the box is the tight box of that
mask, inclusive pixel coordinates (``x1`` = last column on). With the default sizes the mean GT box
covers about 22 % of the image (see :func:`generate`'s ``synthetic.json`` for the measured value).

Determinism: each image has its own random stream, seeded by ``(seed, split, class, index)``, so an
image does not depend on generation order, on the number of images per split, or on how many classes
there are. Pixels are computed with elementwise NumPy arithmetic only (no interpolation kernels or
SIMD transcendental functions per pixel) and PNGs are written by OpenCV with a fixed compression
level: the same config gives byte-identical files with the same library versions.
"""

from __future__ import annotations

import colorsys
import errno
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Bump whenever the pixels, the layout or the metadata written for a given config change: it is
#: part of the digest, so caches made by an older generator are not reused.
GENERATOR_VERSION: int = 1

#: Head colours: (name used in class names, RGB).
HEAD_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (225, 40, 35)),
    ("blue", (45, 110, 245)),
    ("green", (35, 175, 60)),
    ("yellow", (245, 210, 25)),
    ("purple", (165, 60, 215)),
)
#: Head patterns, as the adjective used in class names.
HEAD_PATTERNS: tuple[str, ...] = ("dotted", "ringed", "checkered", "solid")
MAX_CLASSES = len(HEAD_COLOURS) * len(HEAD_PATTERNS)

#: Ink of the head patterns: near black, so that every head colour shows its pattern.
_PATTERN_INK = np.array([25.0, 25.0, 25.0])

#: Body hue (degrees): class means are spread over this range; per-image spread (σ) around them.
BODY_HUE_RANGE = (15.0, 45.0)
BODY_HUE_SPREAD = 8.0

#: Object length (body major axis) as a fraction of the image side, and body aspect (minor/major).
OBJECT_LENGTH = (0.35, 0.75)
BODY_ASPECT = (0.5, 0.8)
#: Head radius as a fraction of the body length, and its floor in pixels.
HEAD_RADIUS = (0.08, 0.10)
MIN_HEAD_RADIUS_PX = 4.0

SPLITS = ("train", "val", "test")
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; level 3+ saves <10 % of bytes
_CACHE_ENV = "WSOLBENCH_CACHE"
_INFO_FILE = "synthetic.json"


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of a synthetic dataset. Every field changes the pixels or the splits.

    Attributes:
        num_classes: 2 to 20 (see :func:`head_style`; neither head cue alone decides from 10 up).
        image_size: side of the square images, pixels (>= 32).
        train_per_class, val_per_class, test_per_class: images per class in each split (>= 1).
        seed: the seed every image's random stream derives from.
    """

    num_classes: int = 10
    image_size: int = 96
    train_per_class: int = 100
    val_per_class: int = 20
    test_per_class: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"SyntheticConfig.{f.name} must be an int, got {value!r}")
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(
                f"SyntheticConfig.num_classes={self.num_classes}: must be 2..{MAX_CLASSES} "
                f"({len(HEAD_COLOURS)} head colours x {len(HEAD_PATTERNS)} patterns)"
            )
        if self.image_size < 32:
            raise ValueError(
                f"SyntheticConfig.image_size={self.image_size}: must be >= 32 so heads "
                f"(radius >= {MIN_HEAD_RADIUS_PX:g} px) render their pattern"
            )
        for name in ("train_per_class", "val_per_class", "test_per_class"):
            # An empty split could not be read back (the metadata format has no empty split).
            if getattr(self, name) < 1:
                raise ValueError(f"SyntheticConfig.{name}={getattr(self, name)}: must be >= 1")
        if self.seed < 0:
            raise ValueError(f"SyntheticConfig.seed={self.seed}: must be >= 0")

    def per_class(self, split: str) -> int:
        """Images per class in ``split`` (one of :data:`SPLITS`)."""
        if split not in _SPLIT_STREAM:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return getattr(self, f"{split}_per_class")

    def digest(self) -> str:
        """A short stable hash (12 hex digits) of the fields and :data:`GENERATOR_VERSION`."""
        payload = json.dumps(
            {"generator_version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True
        ).encode()
        return hashlib.sha256(payload).hexdigest()[:12]


@dataclass
class SyntheticSample:
    """One rendered image with its ground truth.

    Attributes:
        image: [S, S, 3] uint8 RGB.
        mask: [S, S] bool, body ∪ head (the GT mask).
        head_mask: [S, S] bool, the head disc alone.
        box: [4] int64 tight box of ``mask``: x0, y0, x1, y1, inclusive pixel coordinates.
        label: class index.
        info: geometry, for statistics: ``length`` (body major axis, px), ``head_radius`` (px),
            ``polygon`` (True for a polygon body, False for an ellipse).
    """

    image: np.ndarray
    mask: np.ndarray
    head_mask: np.ndarray
    box: np.ndarray
    label: int
    info: dict = field(default_factory=dict)


def head_style(label: int) -> tuple[int, int]:
    """The head of class ``label`` as (colour index, pattern index); see the module docstring.

    Args:
        label: class index, 0..19.

    Returns:
        Indices into :data:`HEAD_COLOURS` and :data:`HEAD_PATTERNS`.
    """
    if not 0 <= label < MAX_CLASSES:
        raise ValueError(f"class index {label} out of range 0..{MAX_CLASSES - 1}")
    n_colours = len(HEAD_COLOURS)
    colour = label % n_colours
    return colour, (colour + label // n_colours) % len(HEAD_PATTERNS)


def class_names(num_classes: int) -> list[str]:
    """Class names a text encoder can embed: ``"<colour> <pattern>-headed shape"``.

    Class ``k`` has the same name whatever ``num_classes`` is (the list is a prefix of a fixed one).

    Args:
        num_classes: 1..20.

    Returns:
        ``num_classes`` unique names, e.g. ``"red dotted-headed shape"``.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes={num_classes}: must be 1..{MAX_CLASSES}")
    names = []
    for k in range(num_classes):
        colour, pattern = head_style(k)
        names.append(f"{HEAD_COLOURS[colour][0]} {HEAD_PATTERNS[pattern]}-headed shape")
    return names


def _class_hue(label: int) -> float:
    """Mean body hue (degrees) of a class: spread over BODY_HUE_RANGE independently of num_classes.

    The golden-ratio sequence places any number of classes evenly over the range, and keeps class
    ``k``'s hue fixed when classes are added.
    """
    lo, hi = BODY_HUE_RANGE
    return lo + (hi - lo) * ((label * 0.6180339887498949) % 1.0)


def _image_rng(config: SyntheticConfig, split: str, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, _SPLIT_STREAM[split], label, index])


def _value_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
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


def _local_frame(
    xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in a frame centred at (cx, cy) and rotated by ``angle`` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _ellipse(xx, yy, cx, cy, a, b, angle) -> np.ndarray:
    u, v = _local_frame(xx, yy, cx, cy, angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _random_colour(rng: np.random.Generator, max_sat: float) -> np.ndarray:
    """[3] RGB in 0..255 of uniform hue, saturation in 0..max_sat and value in 0.25..0.95."""
    hsv = (rng.random(), rng.uniform(0.0, max_sat), rng.uniform(0.25, 0.95))
    return np.array(colorsys.hsv_to_rgb(*hsv)) * 255.0


def _background(
    rng: np.random.Generator, size: int, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """[S, S, 3] float64 RGB in 0..255: smooth random colours plus class-free clutter blobs.

    Saturation stays moderate so that the background rarely looks like a head; brightness varies
    more than hue, as in natural scenes.
    """
    image = (
        _random_colour(rng, 0.6)
        + 28.0 * _value_noise(rng, size, 4, 1)
        + 14.0 * _value_noise(rng, size, 4, 3)
        + 7.0 * _value_noise(rng, size, 8, 3)
    )
    xx, yy = grid
    for _ in range(int(rng.integers(2, 6))):
        a = rng.uniform(0.02, 0.065) * size
        blob = _ellipse(
            xx,
            yy,
            rng.uniform(0, size - 1),
            rng.uniform(0, size - 1),
            a,
            a * rng.uniform(0.4, 1.0),
            rng.uniform(0, math.pi),
        )
        image[blob] = _random_colour(rng, 0.7)
    return image


def _body_shape(rng: np.random.Generator, a: float, b: float) -> np.ndarray | None:
    """None for an ellipse, else [n, 2] vertices (object frame, counter-clockwise) of a polygon.

    The vertices lie on the ellipse in angular order, so the polygon is convex and inscribed in it.
    """
    if rng.random() < 0.5:
        return None
    n = int(rng.integers(5, 9))
    start = rng.uniform(0, 2 * math.pi)
    t = start + 2 * math.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, size=n)) / n
    return np.stack([a * np.cos(t), b * np.sin(t)], axis=1)


def _boundary_distance(poly: np.ndarray | None, a: float, b: float, direction: np.ndarray) -> float:
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


def _inside_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    inside = np.ones(u.shape, dtype=bool)
    for (px, py), (qx, qy) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        inside &= (qx - px) * (v - py) - (qy - py) * (u - px) >= 0
    return inside


def _head_pattern(pattern: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
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


def render_sample(config: SyntheticConfig, split: str, label: int, index: int) -> SyntheticSample:
    """Render image ``index`` of class ``label`` in ``split``; a pure function of its arguments.

    Args:
        config: the dataset parameters (image size, seed).
        split: one of :data:`SPLITS`.
        label: class index, 0 <= label < config.num_classes.
        index: image number within the class and split.

    Returns:
        The image and its ground truth (see :class:`SyntheticSample`).
    """
    if split not in _SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not 0 <= label < config.num_classes:
        raise ValueError(f"class index {label} out of range 0..{config.num_classes - 1}")
    rng = _image_rng(config, split, label, index)
    size = config.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = _background(rng, size, (xx, yy))

    # Geometry in the object frame: body centred at the origin, major axis along u.
    length = rng.uniform(*OBJECT_LENGTH) * size
    a = length / 2
    b = a * rng.uniform(*BODY_ASPECT)
    rotation = rng.uniform(0, 2 * math.pi)
    poly = _body_shape(rng, a, b)
    head_r = max(MIN_HEAD_RADIUS_PX, rng.uniform(*HEAD_RADIUS) * length)
    # Head near one end of the major axis (which end is random; rotation covers the rest).
    head_angle = rng.uniform(-0.35, 0.35) + (math.pi if rng.random() < 0.5 else 0.0)
    direction = np.array([math.cos(head_angle), math.sin(head_angle)])
    head_uv = direction * _boundary_distance(poly, a, b, direction)

    # Extent of body ∪ head in image axes around the body centre, to place it fully inside.
    c, s = math.cos(rotation), math.sin(rotation)
    if poly is None:
        half_w, half_h = math.hypot(a * c, b * s), math.hypot(a * s, b * c)
        body_ext = (-half_w, half_w, -half_h, half_h)
    else:
        px = c * poly[:, 0] - s * poly[:, 1]
        py = s * poly[:, 0] + c * poly[:, 1]
        body_ext = (px.min(), px.max(), py.min(), py.max())
    hx = c * head_uv[0] - s * head_uv[1]
    hy = s * head_uv[0] + c * head_uv[1]
    x_lo, x_hi = min(body_ext[0], hx - head_r), max(body_ext[1], hx + head_r)
    y_lo, y_hi = min(body_ext[2], hy - head_r), max(body_ext[3], hy + head_r)
    # One pixel of margin so the object never touches the border (a box there would be ambiguous).
    cx = rng.uniform(1 - x_lo, max(1 - x_lo, size - 2 - x_hi))
    cy = rng.uniform(1 - y_lo, max(1 - y_lo, size - 2 - y_hi))

    # Body: stripes in a grey-brown palette whose hue carries the weak class cue.
    u, v = _local_frame(xx, yy, cx, cy, rotation)
    body = (u / a) ** 2 + (v / b) ** 2 <= 1.0 if poly is None else _inside_polygon(u, v, poly)
    hue = (_class_hue(label) + rng.normal(0.0, BODY_HUE_SPREAD)) % 360.0
    sat, val = rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.75)
    light = np.array(colorsys.hsv_to_rgb(hue / 360.0, sat, min(1.0, val * 1.25))) * 255.0
    dark = np.array(colorsys.hsv_to_rgb(hue / 360.0, sat, val * 0.75)) * 255.0
    stripe_angle = rng.uniform(0, math.pi)
    period = rng.uniform(4.0, 8.0) * size / 96.0
    phase = (u * math.cos(stripe_angle) + v * math.sin(stripe_angle)) / period + rng.random()
    tri = np.abs(2.0 * (phase - np.floor(phase)) - 1.0)  # triangle wave in [0, 1]
    image[body] = dark + (light - dark) * tri[body][:, None]

    # Head: a disc centred on the body boundary; colour x pattern is the class.
    head_cx, head_cy = cx + hx, cy + hy
    head = (xx - head_cx) ** 2 + (yy - head_cy) ** 2 <= head_r**2
    colour_idx, pattern_idx = head_style(label)
    colour = np.array(HEAD_COLOURS[colour_idx][1], dtype=np.float64)
    pattern = HEAD_PATTERNS[pattern_idx]
    # 4x4 supersampling of the pattern: at a 4-px radius, point sampling turns dots into noise.
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    su, sv = np.meshgrid(sub, sub)
    hu, hv = _local_frame(
        xx[head][:, None] + su.ravel(),
        yy[head][:, None] + sv.ravel(),
        head_cx + rng.uniform(-0.5, 0.5),
        head_cy + rng.uniform(-0.5, 0.5),
        rng.uniform(0, math.pi),
    )
    ink = _head_pattern(pattern, hu, hv, head_r).mean(axis=1)
    image[head] = colour + (_PATTERN_INK - colour) * ink[:, None]

    mask = body | head
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)
    info = {"length": length, "head_radius": head_r, "polygon": poly is not None}
    return SyntheticSample(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        mask=mask,
        head_mask=head,
        box=box,
        label=label,
        info=info,
    )


def _write_png(path: Path, array: np.ndarray) -> None:
    if array.ndim == 3:
        array = array[:, :, ::-1]  # OpenCV writes BGR
    if not cv2.imwrite(str(path), np.ascontiguousarray(array), _PNG_PARAMS):
        raise OSError(f"cannot write {path}")


def _build(root: Path, config: SyntheticConfig, progress: bool) -> dict:
    """Write the whole dataset under ``root`` (an empty folder); return the summary statistics."""
    from tqdm.auto import tqdm

    from wsolbench.data.metadata import MaskRecord, SplitMetadata, write_split

    names = class_names(config.num_classes)
    total = sum(config.per_class(s) for s in SPLITS) * config.num_classes
    stats: dict = {}
    size = config.image_size
    with tqdm(total=total, desc="synthetic", unit="img", disable=not progress) as bar:
        for split in SPLITS:
            ids, labels, sizes, boxes, masks = [], {}, {}, {}, {}
            areas, lengths = [], []
            for label in range(config.num_classes):
                rel_dir = f"{split}/{label:02d}"
                (root / "images" / rel_dir).mkdir(parents=True, exist_ok=True)
                (root / "masks" / rel_dir).mkdir(parents=True, exist_ok=True)
                for n in range(config.per_class(split)):
                    sample = render_sample(config, split, label, n)
                    rel = f"{rel_dir}/{n:05d}.png"
                    _write_png(root / "images" / rel, sample.image)
                    _write_png(root / "masks" / rel, sample.mask.astype(np.uint8) * 255)
                    ids.append(rel)
                    labels[rel] = label
                    sizes[rel] = (size, size)
                    boxes[rel] = sample.box[None, :]
                    # The mask file has the image's relative path under masks/.
                    masks[rel] = MaskRecord(mask_paths=[rel], ignore_path=None)
                    x0, y0, x1, y1 = sample.box.tolist()
                    areas.append((x1 - x0 + 1) * (y1 - y0 + 1) / size**2)
                    lengths.append(sample.info["length"] / size)
                    bar.update(1)
            # Train boxes are written too (harmless: the harness never reads them); masks only where
            # they are evaluated.
            write_split(
                root / "metadata" / split,
                SplitMetadata(
                    split_dir=root / "metadata" / split,
                    image_ids=ids,
                    labels=labels,
                    sizes=sizes,
                    boxes=boxes,
                    masks=masks if split != "train" else None,
                ),
            )
            stats[split] = {
                "images": len(ids),
                "box_area_fraction_mean": round(float(np.mean(areas)), 4),
                "object_length_fraction_mean": round(float(np.mean(lengths)), 4),
            }
    (root / "classnames.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    info = {
        "generator": "wsolbench.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "digest": config.digest(),
        "config": asdict(config),
        "classes": names,
        "stats": stats,
    }
    (root / _INFO_FILE).write_text(
        json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return stats


def _build_in_temp(out: Path, config: SyntheticConfig, progress: bool) -> Path:
    """Build into a fresh temporary sibling of ``out`` (same file system, so renaming is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a dataset folder is meant to be shared
        stats = _build(tmp, config, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("generated synthetic dataset %s: %s", config.digest(), stats)
    return tmp


def generate(
    out: str | Path, config: SyntheticConfig = SyntheticConfig(), *, progress: bool = False
) -> Path:
    """Write a complete synthetic dataset root at ``out``, atomically.

    Layout (read exactly like a prepared CUB root)::

        images/<split>/<class:02d>/<n:05d>.png     RGB, image_size x image_size
        masks/<split>/<class:02d>/<n:05d>.png      uint8 0/255 mask of body ∪ head (all splits)
        metadata/<split>/{image_ids,class_labels,image_sizes,localization}.txt   (boxes, all splits)
        metadata/{val,test}/mask_localization.txt  "<image id>,<mask path>," (no ignore region)
        classnames.txt                             one name per line, class order
        protocol.yaml                              the protocol to run it under (write_protocol)
        synthetic.json                             config, digest, generator version, box statistics

    The files are written into a temporary sibling folder, renamed to ``out`` at the end: ``out``
    either does not exist or is complete.

    Args:
        out: the dataset root to create; it must not exist (an empty folder is accepted).
        config: the dataset parameters.
        progress: show a progress bar.

    Returns:
        ``out`` as a Path.

    Raises:
        FileExistsError: ``out`` exists and is not empty.
    """
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} exists and is not empty; remove it or choose another output folder"
        )
    tmp = _build_in_temp(out, config, progress)
    try:
        write_protocol(tmp, config)
        if out.exists():
            out.rmdir()  # empty (checked above); rename() needs the name free
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def default_cache_dir() -> Path:
    """``$WSOLBENCH_CACHE`` if set, else ``~/.cache/wsolbench``."""
    return Path(os.environ.get(_CACHE_ENV) or Path.home() / ".cache" / "wsolbench").expanduser()


def _check_cached(root: Path, config: SyntheticConfig) -> None:
    """Raise unless ``root`` is a complete dataset of ``config``; synthetic.json is written last."""
    try:
        info = json.loads((root / _INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"cached synthetic dataset {root} is incomplete or corrupt ({exc}); delete that folder "
            "and run again to regenerate it"
        ) from None
    if info.get("digest") != config.digest():
        raise RuntimeError(
            f"cached synthetic dataset {root} holds digest {info.get('digest')!r}, expected "
            f"{config.digest()!r}; delete that folder and run again to regenerate it"
        )


def ensure_synthetic(
    config: SyntheticConfig = SyntheticConfig(),
    cache_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> Path:
    """The cached dataset root for ``config``, generated on first use.

    The root is ``<cache_dir>/synthetic-<digest>``, with ``cache_dir`` defaulting to
    :func:`default_cache_dir`. Safe when several processes (e.g. torchrun ranks) ask at once: each
    builds into its own temporary folder and renames it into place; a process that loses the race
    discards its copy and uses the winner's, which is identical.

    Args:
        config: the dataset parameters.
        cache_dir: where datasets are cached.
        progress: show a progress bar while generating.

    Returns:
        The dataset root.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = cache / f"synthetic-{config.digest()}"
    if root.exists():
        _check_cached(root, config)
        return root
    logger.info("generating the synthetic dataset into %s (once; cached afterwards)", root)
    tmp = _build_in_temp(root, config, progress)
    try:
        os.rename(tmp, root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        # Another process renamed its copy first (rename onto a non-empty folder fails).
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not root.exists():
            raise
        logger.info("another process generated %s first; using its copy", root)
    _check_cached(root, config)
    return root


PROTOCOL_FILE = "protocol.yaml"


def write_protocol(root: str | Path, config: SyntheticConfig) -> Path:
    """Write ``<root>/protocol.yaml``: the protocol of a synthetic set made with ``config``
    (:func:`generate` calls it).

    ``synthetic-v1`` pins the data of its own generator settings, so a set generated with other
    settings is run under this file instead (``--protocol <root>/protocol.yaml``): synthetic-v1's
    rules at this set's image size and class count, its own class names, and the fingerprint of
    exactly this data pinned, so results of the two are never mixed up.

    Returns:
        The protocol file's path.
    """
    import yaml

    from wsolbench.data.fingerprint import data_fingerprint
    from wsolbench.data.metadata import read_split
    from wsolbench.protocol import load_protocol

    root = Path(root)
    splits = {s: read_split(root / "metadata" / s, num_classes=config.num_classes) for s in SPLITS}
    content = dict(load_protocol("synthetic-v1").content)
    content.update(
        id=f"synthetic-custom-{config.digest()[:8]}",
        description=f"synthetic-v1's rules on a set generated with {asdict(config)}",
        num_classes=config.num_classes,
        classnames="classnames.txt",  # written by the generator beside the protocol
        generator=asdict(config),
        eval_size=[config.image_size, config.image_size],
        data_fingerprint={
            split: info["sha256"] for split, info in data_fingerprint(splits)["splits"].items()
        },
    )
    path = root / PROTOCOL_FILE
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path
