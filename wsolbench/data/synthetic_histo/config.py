"""The parameters of a synthetic histology set: HistoConfig and its digest.

Every field changes the pixels or the splits; the digest of the fields and the generator version
names a generated root (:mod:`wsolbench.data.generated` caches by it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from wsolbench.data.generated import check_config, per_class

#: Bump whenever the pixels, the layout or the metadata written for a given config change.
GENERATOR_VERSION: int = 1
#: The two grades, in label order (GlaS's encoding: benign 0, malignant 1).
CLASSES = ("benign", "malignant")
#: First word of every image's seed sequence: keeps these streams apart from synthetic-v1's.
HISTO_STREAM: int = 0x4157_0001


@dataclass(frozen=True)
class HistoConfig:
    """Parameters of a synthetic histology set (two classes: :data:`CLASSES`).

    Attributes:
        image_size: side of the square images, pixels (>= 64, so nuclei stay a pixel or more).
        train_per_class, val_per_class, test_per_class: images per class in each split (>= 1).
        seed: the seed every image's random stream derives from.
    """

    image_size: int = 96
    train_per_class: int = 300
    val_per_class: int = 20
    test_per_class: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self)
        if self.image_size < 64:
            raise ValueError(
                f"HistoConfig.image_size={self.image_size}: must be >= 64 so that nuclei "
                "(about 1 px at 96 px) still render"
            )

    @property
    def num_classes(self) -> int:
        return len(CLASSES)

    def per_class(self, split: str) -> int:
        """Images per class in ``split`` (one of :data:`~wsolbench.data.generated.SPLITS`)."""
        return per_class(self, split)

    def digest(self) -> str:
        """A short stable hash (12 hex digits) of the fields and :data:`GENERATOR_VERSION`."""
        payload = json.dumps(
            {"world": "synthetic-histo", "generator_version": GENERATOR_VERSION, **asdict(self)},
            sort_keys=True,
        ).encode()
        return hashlib.sha256(payload).hexdigest()[:12]
