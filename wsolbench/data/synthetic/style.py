"""The look of the synthetic world: each class's head and name, and the ranges images draw from.

Class → (colour, pattern) is a Latin-square walk over 5 colours × 4 patterns (:func:`head_style`):
class ``k`` takes colour ``k mod 5`` and pattern ``(k mod 5 + k // 5) mod 4``. Each block of five
classes uses every colour once, and each new block shifts the patterns by one, so a colour never
repeats its pattern. With 10 or more classes (the default is 10) every colour occurs in at least two
classes and every pattern in at least two: neither colour nor pattern alone decides the class, only
their conjunction does — the classifier must look at the head itself. At most 20 classes exist.
Class names (:func:`class_names`) are prefixes of one fixed list, so
``protocols/classnames/synthetic.txt`` holds the default 10 and each generated root its own
``classnames.txt``.

The body's hue carries a weak class cue (:func:`class_hue`, :data:`BODY_HUE_SPREAD` around it);
sizes are fractions of the image side. :mod:`wsolbench.data.synthetic.render` draws from them.
"""

from __future__ import annotations

import numpy as np

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
PATTERN_INK = np.array([25.0, 25.0, 25.0])

#: Body hue (degrees): class means are spread over this range; per-image spread (σ) around them.
BODY_HUE_RANGE = (15.0, 45.0)
BODY_HUE_SPREAD = 8.0

#: Object length (body major axis) as a fraction of the image side, and body aspect (minor/major).
OBJECT_LENGTH = (0.35, 0.75)
BODY_ASPECT = (0.5, 0.8)
#: Head radius as a fraction of the body length, and its floor in pixels.
HEAD_RADIUS = (0.08, 0.10)
MIN_HEAD_RADIUS_PX = 4.0


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


def class_hue(label: int) -> float:
    """Mean body hue (degrees) of a class: spread over BODY_HUE_RANGE independently of num_classes.

    The golden-ratio sequence places any number of classes evenly over the range, and keeps class
    ``k``'s hue fixed when classes are added.
    """
    lo, hi = BODY_HUE_RANGE
    return lo + (hi - lo) * ((label * 0.6180339887498949) % 1.0)
