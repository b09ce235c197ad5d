"""Generated datasets: a world's images written as a prepared root, atomically, and cached.

wsolbench ships worlds that it draws itself (``synthetic``, ``synthetic-histo``). Each is a
:class:`GeneratedWorld`: its settings (a frozen config with a digest), its class names and a
function that renders one sample. :func:`generate` writes such a world where asked;
:func:`ensure_generated` keeps one root per (world, digest) in the user's cache and draws it on
first use, safely when several processes ask.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wsolbench.util.atomic import build_lock, building_folder
from wsolbench.util.cache import default_cache_dir
from wsolbench.util.progress import progress as progress_bar

logger = logging.getLogger(__name__)

#: The splits every generated world has, in the order they are written.
SPLITS = ("train", "val", "test")
#: Each split's place in the seed of every image's random stream.
SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
#: The protocol file a generated root carries.
PROTOCOL_FILE = "protocol.yaml"

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; level 3+ saves <10 % of bytes


def check_config(config) -> None:
    """The checks every world's config (a frozen dataclass of ints) shares, by field name:
    every field an int, ``<split>_per_class`` >= 1 (the metadata format has no empty split, so
    one could not be read back), ``seed`` >= 0. Raises TypeError / ValueError naming the field."""
    name = type(config).__name__
    for f in fields(config):
        value = getattr(config, f.name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name}.{f.name} must be an int, got {value!r}")
    for split in SPLITS:
        if per_class(config, split) < 1:
            raise ValueError(f"{name}.{split}_per_class={per_class(config, split)}: must be >= 1")
    if config.seed < 0:
        raise ValueError(f"{name}.seed={config.seed}: must be >= 0")


def per_class(config, split: str) -> int:
    """Images per class in ``split`` (one of :data:`SPLITS`) of a world's config."""
    if split not in SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return getattr(config, f"{split}_per_class")


@dataclass(frozen=True)
class GeneratedWorld:
    """What :func:`generate` needs to write a world.

    Attributes:
        name: ``synthetic`` or ``synthetic-histo``: the cache folder is ``<name>-<digest>``, the
            summary file ``<name>.json``.
        config: a frozen dataclass with ``digest()``, ``per_class(split)``, ``image_size`` and
            ``num_classes``; every field changes the pixels or the splits.
        generator: the module that draws it and its version, recorded in the summary.
        classes: class names, in label order.
        render: ``render(split, label, index)`` → a sample with ``image`` ([S, S, 3] uint8 RGB),
            ``mask`` ([S, S] bool, the ground truth), ``box`` ([4] int64 or None) and ``info``
            (numbers averaged into the summary).
        protocol: the shipped protocol whose rules a generated root's own protocol file keeps
            (:func:`write_protocol`).
        boxes: whether the metadata holds boxes (else masks only, in ``localization.txt``).
    """

    name: str
    config: Any
    generator: dict
    classes: list[str]
    render: Callable[[str, int, int], Any]
    protocol: str
    boxes: bool

    @property
    def info_file(self) -> str:
        return f"{self.name}.json"


def _write_png(path: Path, array: np.ndarray) -> None:
    if array.ndim == 3:
        array = array[:, :, ::-1]  # OpenCV writes BGR
    if not cv2.imwrite(str(path), np.ascontiguousarray(array), _PNG_PARAMS):
        raise OSError(f"cannot write {path}")


def _summary(masks: list[float], boxes: list[float], infos: list[dict]) -> dict:
    """Per-split statistics: mean mask and box area (fractions of the image), mean info numbers."""
    stats = {"images": len(masks), "mask_area_fraction_mean": round(float(np.mean(masks)), 4)}
    if boxes:
        stats["box_area_fraction_mean"] = round(float(np.mean(boxes)), 4)
    for key in sorted(infos[0]):
        if isinstance(infos[0][key], (int, float)) and not isinstance(infos[0][key], bool):
            stats[f"{key}_mean"] = round(float(np.mean([info[key] for info in infos])), 4)
    return stats


def _build(root: Path, world: GeneratedWorld, progress: bool) -> dict:
    """Write the whole dataset under ``root`` (an empty folder); return the summary statistics."""
    from wsolbench.data.metadata import MaskRecord, SplitMetadata, write_split

    config = world.config
    size = config.image_size
    total = sum(config.per_class(s) for s in SPLITS) * config.num_classes
    stats: dict = {}
    with progress_bar(total=total, desc=world.name, unit="img", enabled=progress) as bar:
        for split in SPLITS:
            ids, labels, sizes, boxes, masks = [], {}, {}, {}, {}
            mask_areas, box_areas, infos = [], [], []
            for label in range(config.num_classes):
                rel_dir = f"{split}/{label:02d}"
                (root / "images" / rel_dir).mkdir(parents=True, exist_ok=True)
                (root / "masks" / rel_dir).mkdir(parents=True, exist_ok=True)
                for n in range(config.per_class(split)):
                    sample = world.render(split, label, n)
                    rel = f"{rel_dir}/{n:05d}.png"
                    _write_png(root / "images" / rel, sample.image)
                    _write_png(root / "masks" / rel, sample.mask.astype(np.uint8) * 255)
                    ids.append(rel)
                    labels[rel] = label
                    sizes[rel] = (size, size)
                    # The mask file has the image's relative path under masks/.
                    masks[rel] = MaskRecord(mask_paths=[rel], ignore_path=None)
                    mask_areas.append(float(sample.mask.mean()))
                    if world.boxes:
                        boxes[rel] = sample.box[None, :]
                        x0, y0, x1, y1 = sample.box.tolist()
                        box_areas.append((x1 - x0 + 1) * (y1 - y0 + 1) / size**2)
                    infos.append(sample.info)
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
                    boxes=boxes if world.boxes else None,
                    masks=masks if split != "train" else None,
                ),
            )
            stats[split] = _summary(mask_areas, box_areas, infos)
    (root / "classnames.txt").write_text("".join(f"{n}\n" for n in world.classes), encoding="utf-8")
    info = {
        "generator": world.generator,
        "digest": config.digest(),
        "config": asdict(config),
        "classes": world.classes,
        "stats": stats,
    }
    (root / world.info_file).write_text(
        json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return stats


def _build_logged(tmp: Path, world: GeneratedWorld, progress: bool) -> None:
    """Draw ``world`` into the empty folder ``tmp`` and log its summary."""
    stats = _build(tmp, world, progress)
    logger.info("generated %s dataset %s: %s", world.name, world.config.digest(), stats)


def generate(out: str | Path, world: GeneratedWorld, *, progress: bool = False) -> Path:
    """Write a complete dataset root of ``world`` at ``out``, atomically.

    Layout (read exactly like a prepared CUB root)::

        images/<split>/<class:02d>/<n:05d>.png     RGB, image_size x image_size
        masks/<split>/<class:02d>/<n:05d>.png      uint8 0/255 ground-truth mask (all splits)
        metadata/<split>/{image_ids,class_labels,image_sizes,localization}.txt
        metadata/{val,test}/mask_localization.txt  with boxes: "<image id>,<mask path>,"
        classnames.txt                             one name per line, class order
        protocol.yaml                              the protocol to run it under
        <name>.json                                config, digest, generator, statistics

    ``localization.txt`` holds the boxes of a world with boxes, else the masks. The files are
    written into a temporary sibling folder, renamed to ``out`` at the end: ``out`` either does
    not exist or is complete. The build holds :func:`~wsolbench.util.atomic.build_lock` (the
    hidden file ``.<out>.lock`` beside ``out`` stays), so the next one removes what a build killed
    outright left.

    Args:
        out: the dataset root to create; it must not exist (an empty folder is accepted).
        world: what to draw.
        progress: show a progress bar.

    Returns:
        ``out`` as a Path.

    Raises:
        FileExistsError: ``out`` exists and is not empty.
    """
    out = Path(out).expanduser()
    _refuse_non_empty(out)
    with build_lock(out):  # removes what a build of ``out`` killed outright left
        _refuse_non_empty(out)  # written by the process this one waited for
        with building_folder(out) as tmp:
            _build_logged(tmp, world, progress)
            write_protocol(tmp, world)
            if out.exists():
                out.rmdir()  # empty (checked above); rename() needs the name free
            os.rename(tmp, out)
    return out


def _refuse_non_empty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} exists and is not empty; remove it or choose another output folder"
        )


def write_protocol(root: str | Path, world: GeneratedWorld) -> Path:
    """Write ``<root>/protocol.yaml``: the protocol of the set ``world`` drew into ``root``
    (:func:`generate` calls it).

    A shipped protocol (``synthetic-v1``) pins the data of its own generator settings, so a set
    generated with other settings is run under this file instead (``--protocol
    <root>/protocol.yaml``): the shipped protocol's rules at this set's image size and class
    count, its own class names, and the fingerprint of exactly this data pinned, so results of
    the two are never mixed up.

    Returns:
        The protocol file's path.
    """
    import yaml

    from wsolbench.data.fingerprint import data_fingerprint
    from wsolbench.data.metadata import read_split
    from wsolbench.protocol import load_protocol

    root = Path(root)
    config = world.config
    splits = {s: read_split(root / "metadata" / s, num_classes=config.num_classes) for s in SPLITS}
    content = dict(load_protocol(world.protocol).content)
    content.update(
        id=f"{world.name}-custom-{config.digest()[:8]}",
        description=f"{world.protocol}'s rules on a set generated with {asdict(config)}",
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


def _check_cached(root: Path, world: GeneratedWorld) -> None:
    """Raise unless ``root`` is a complete dataset of ``world``; the summary is written last."""
    try:
        info = json.loads((root / world.info_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"cached {world.name} dataset {root} is incomplete or corrupt ({exc}); delete that "
            "folder and run again to regenerate it"
        ) from None
    if info.get("digest") != world.config.digest():
        raise RuntimeError(
            f"cached {world.name} dataset {root} holds digest {info.get('digest')!r}, expected "
            f"{world.config.digest()!r}; delete that folder and run again to regenerate it"
        )


def ensure_generated(
    world: GeneratedWorld, cache_dir: str | Path | None = None, *, progress: bool = False
) -> Path:
    """The cached dataset root of ``world``, generated on first use.

    The root is ``<cache_dir>/<name>-<digest>``, with ``cache_dir`` defaulting to
    :func:`~wsolbench.util.cache.default_cache_dir`. Safe when several processes (e.g. torchrun
    ranks) ask at once: they take turns (:func:`~wsolbench.util.atomic.build_lock`), the first
    builds in a temporary folder renamed into place, the others find its root; a build killed
    outright leaves its folder to the next build, which removes it.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = cache / f"{world.name}-{world.config.digest()}"
    if root.exists():
        _check_cached(root, world)
        return root
    with build_lock(root):
        if not root.exists():  # else built by the process this one waited for
            logger.info("generating the %s dataset into %s (once; cached after)", world.name, root)
            with building_folder(root) as tmp:
                _build_logged(tmp, world, progress)
                os.rename(tmp, root)
    _check_cached(root, world)
    return root
