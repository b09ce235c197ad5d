"""The image dataset every driver reads: protocol geometry, method normalization, PIL decoding.

Images are decoded with PIL (``torchvision.io`` cannot decode on a CPU-only torch here), converted
to RGB and resized to the protocol's evaluation size without cropping (bilinear with PIL's
antialiasing, what ``torchvision.transforms.Resize`` does on PIL images), then normalized with the
method's mean / std. Training-time augmentation is an optional callable on the PIL image that
replaces that resize.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from wsolbench.data.metadata import SplitMetadata


class ImageDecodeError(OSError):
    """An image file is missing or cannot be decoded; the message names it."""


def load_rgb(path: Path) -> Image.Image:
    """Decode an image file as RGB, with an error that names the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageDecodeError(
            f"image {path} does not exist; check --data-root / the image ids"
        ) from None
    except OSError as exc:
        raise ImageDecodeError(f"image {path} cannot be decoded: {exc}") from None


def to_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL RGB image → normalized [3, H, W] float32 tensor."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class WSOLImageDataset(Dataset):
    """One split of a prepared dataset, items ``{"image": [3, H, W], "label": int, "index": int}``.

    Args:
        meta: the split's metadata (image ids in evaluation order).
        image_root: folder the image ids are relative to.
        size: (H, W) the images are resized to (the protocol's ``eval_size``).
        mean, std: the method's input normalization (RGB, for images scaled to [0, 1]).
        augment: optional PIL → PIL transform used instead of the plain resize (training); it must
            return an image of ``size``.
    """

    def __init__(
        self,
        meta: SplitMetadata,
        image_root: str | Path,
        size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        augment: Callable[[Image.Image], Image.Image] | None = None,
    ):
        self.meta = meta
        self.image_root = Path(image_root)
        self.size = size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.meta.image_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.meta.image_ids[index]
        image = load_rgb(self.image_root / image_id)
        if self.augment is not None:
            image = self.augment(image)
        else:
            height, width = self.size
            image = image.resize((width, height), Image.BILINEAR)
        return {
            "image": to_tensor(image, self.mean, self.std),
            "label": self.meta.labels[image_id],
            "index": index,
        }
