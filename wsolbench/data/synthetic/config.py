"""The parameters of a synthetic dataset: SyntheticConfig, its splits, and its digest.

Every field changes the pixels or the splits; the digest of the fields and the generator version
names a generated root (:mod:`wsolbench.data.synthetic.build` caches by it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from wsolbench.data.generated import check_config, per_class
from wsolbench.data.synthetic.style import (
    HEAD_COLOURS,
    HEAD_PATTERNS,
    MAX_CLASSES,
    MIN_HEAD_RADIUS_PX,
)

#: Bump whenever the pixels, the layout or the metadata written for a given config change: it is
#: part of the digest, so caches made by an older generator are not reused.
GENERATOR_VERSION: int = 1


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
        check_config(self)
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

    def per_class(self, split: str) -> int:
        """Images per class in ``split`` (one of :data:`~wsolbench.data.generated.SPLITS`)."""
        return per_class(self, split)

    def digest(self) -> str:
        """A short stable hash (12 hex digits) of the fields and :data:`GENERATOR_VERSION`."""
        payload = json.dumps(
            {"generator_version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True
        ).encode()
        return hashlib.sha256(payload).hexdigest()[:12]
