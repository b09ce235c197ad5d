"""Drawing one sample of the histology world: glands in stroma, with hard negatives around them.

Every image is a field of colon mucosa: stroma (:mod:`~wsolbench.data.synthetic_histo.tissue`),
0–3 hard negatives (vessels, empty spaces, lymphoid aggregates; both classes alike, never in the
mask) and glands (:mod:`~wsolbench.data.synthetic_histo.glands`) whose shape and arrangement are
the class. Every image has glands: a draw whose glands cover less than 8 % or more than 75 % of
the image is drawn again from the same stream.

Determinism: each image has its own random stream, seeded by ``(HISTO_STREAM, seed, split,
class, index)``; pixels are computed with elementwise NumPy arithmetic only, so the same config
gives byte-identical files on every machine with the same library versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsolbench.data.generated import SPLIT_STREAM, SPLITS
from wsolbench.data.synthetic_histo.config import HISTO_STREAM, HistoConfig
from wsolbench.data.synthetic_histo.glands import (
    BENIGN,
    benign_glands,
    draw_glands,
    malignant_glands,
)
from wsolbench.data.synthetic_histo.tissue import (
    HARD_NEGATIVES,
    MAX_HARD_NEGATIVES,
    hard_negative,
    stroma,
    to_rgb,
)

#: The share of the image the glands must cover (else the image is drawn again).
GLAND_FRACTION = (0.08, 0.75)


@dataclass
class HistoSample:
    """One rendered image with its ground truth.

    Attributes:
        image: [S, S, 3] uint8 RGB.
        mask: [S, S] bool, the glands (epithelium and lumens).
        box: always None (a masks-only world).
        label: 0 benign, 1 malignant.
        info: ``glands`` (how many were drawn), ``hard_negatives``, ``draws`` (attempts).
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    box: None = None
    info: dict = field(default_factory=dict)


def render_histo_sample(config: HistoConfig, split: str, label: int, index: int) -> HistoSample:
    """Render image ``index`` of class ``label`` in ``split``; a pure function of its arguments."""
    if split not in SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if label not in (0, 1):
        raise ValueError(f"class index {label} out of range 0..1")
    rng = np.random.default_rng([HISTO_STREAM, config.seed, SPLIT_STREAM[split], label, index])
    size = config.image_size
    draws = 0
    while True:
        draws += 1
        layers = stroma(rng, size)
        negatives = int(rng.integers(0, MAX_HARD_NEGATIVES + 1))
        for _ in range(negatives):
            hard_negative(rng, layers, HARD_NEGATIVES[int(rng.integers(len(HARD_NEGATIVES)))])
        glands = benign_glands(rng, size) if label == BENIGN else malignant_glands(rng, size)
        mask = draw_glands(layers, glands)
        if GLAND_FRACTION[0] <= mask.mean() <= GLAND_FRACTION[1]:
            break
    info = {"glands": len(glands), "hard_negatives": negatives, "draws": draws}
    return HistoSample(image=to_rgb(rng, layers), mask=mask, label=label, info=info)
