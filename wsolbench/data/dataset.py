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

from wsolbench.data.metadata import IMAGE_SIZES, SplitMetadata


class ImageDecodeError(OSError):
    """An image file is missing or cannot be decoded; the message names it."""


class ImageSizeError(ValueError):
    """A decoded image's size contradicts ``image_sizes.txt``; the message names both."""


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


class RandomResizedCropFlip:
    """The reference benchmark's training transform: RandomResizedCrop + horizontal flip.

    Same sampling rule as torchvision's ``RandomResizedCrop`` (area fraction uniform in
    ``crop_scale``, log-uniform aspect ratio in [3/4, 4/3], 10 tries, then the whole image), but
    drawn from a generator the caller passes in, so that the augmentation of image ``i`` at epoch
    ``e`` is a function of (seed, e, i) alone: identical across worker counts and after a resume.

    Args:
        size: (H, W) of the output image.
        crop_scale: (min, max) area fraction of the crop; (1, 1) keeps the whole image.
        hflip: flip horizontally with probability 0.5.
    """

    def __init__(self, size: tuple[int, int], crop_scale: Sequence[float], hflip: bool):
        low, high = (float(v) for v in crop_scale)
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"train.augment.crop_scale must satisfy 0 < min <= max <= 1, not {crop_scale}"
            )
        self.size, self.scale, self.hflip = size, (low, high), bool(hflip)

    def _crop_box(
        self, width: int, height: int, rng: np.random.Generator
    ) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (np.log(3 / 4), np.log(4 / 3))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            ratio = np.exp(rng.uniform(*log_ratio))
            w = int(round(np.sqrt(target * ratio)))
            h = int(round(np.sqrt(target / ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return left, top, left + w, top + h
        return 0, 0, width, height

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        height, width = self.size
        box = self._crop_box(image.width, image.height, rng)
        image = image.resize((width, height), Image.BILINEAR, box=box)
        if self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image


class WSOLImageDataset(Dataset):
    """One split of a prepared dataset, items ``{"image": [3, H, W], "label": int, "index": int}``.

    Args:
        meta: the split's metadata (image ids in evaluation order).
        image_root: folder the image ids are relative to.
        size: (H, W) the images are resized to (the protocol's ``eval_size``); None keeps each
            image at its own size (for a method that declares ``native_input``).
        mean, std: the method's input normalization (RGB, for images scaled to [0, 1]).
        augment: optional training transform ``(PIL image, numpy Generator) -> PIL image`` of
            ``size`` used instead of the plain resize, e.g. :class:`RandomResizedCropFlip`.
        seed: with the epoch (:meth:`set_epoch`) and the index, seeds the augmentation's generator.
    """

    def __init__(
        self,
        meta: SplitMetadata,
        image_root: str | Path,
        size: tuple[int, int] | None,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Callable[[Image.Image, np.random.Generator], Image.Image] | None = None,
        seed: int = 0,
    ):
        self.meta = meta
        self.image_root = Path(image_root)
        self.size = size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of an epoch (the engine calls this before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.meta.image_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.meta.image_ids[index]
        image = load_rgb(self.image_root / image_id)
        # The split's checks decode only a sample of the images; boxes are rescaled from the size
        # in image_sizes.txt, so every image is held to it here, where its size comes for free.
        expected = self.meta.sizes.get(image_id)
        if expected is not None and image.size != expected:
            raise ImageSizeError(
                f"image {self.image_root / image_id} is {image.width}x{image.height} but "
                f"{self.meta.split_dir / IMAGE_SIZES} says {expected[0]}x{expected[1]}; fix "
                "image_sizes.txt (boxes are rescaled from it) or replace the image"
            )
        if self.augment is not None:
            image = self.augment(image, np.random.default_rng([self.seed, self.epoch, index]))
        elif self.size is not None:
            height, width = self.size
            image = image.resize((width, height), Image.BILINEAR)
        return {
            "image": to_tensor(image, self.mean, self.std),
            "label": self.meta.labels[image_id],
            "index": index,
        }


def training_set(
    meta: SplitMetadata,
    image_root: str | Path,
    size: tuple[int, int],
    method,
    augment: dict,
    seed: int = 0,
) -> WSOLImageDataset:
    """The split as a run trains on it: ``method``'s input normalization and the config's
    ``train.augment`` (``crop_scale``, ``hflip``: :class:`RandomResizedCropFlip` to ``size``),
    the draws seeded by ``seed``."""
    transform = RandomResizedCropFlip(size, augment["crop_scale"], augment["hflip"])
    return WSOLImageDataset(
        meta, image_root, size, method.image_mean, method.image_std, transform, seed=seed
    )
