"""Building a synthetic dataset root: every split written at once, atomically, and cached.

:func:`generate` writes a root where asked; :func:`ensure_synthetic` keeps one root per config
digest in the user's cache and generates it on first use, safely when several processes ask.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from wsolbench.data.synthetic.config import GENERATOR_VERSION, SPLITS, SyntheticConfig
from wsolbench.data.synthetic.protocol_file import write_protocol
from wsolbench.data.synthetic.render import render_sample
from wsolbench.data.synthetic.style import class_names
from wsolbench.util.atomic import rename_into_place

logger = logging.getLogger(__name__)

# SyntheticConfig is frozen, so one instance can be every call's default.
_DEFAULT_CONFIG = SyntheticConfig()

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast; level 3+ saves <10 % of bytes
_CACHE_ENV = "WSOLBENCH_CACHE"
_INFO_FILE = "synthetic.json"


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
    out: str | Path, config: SyntheticConfig = _DEFAULT_CONFIG, *, progress: bool = False
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
    config: SyntheticConfig = _DEFAULT_CONFIG,
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
    if not rename_into_place(tmp, root):
        logger.info("another process generated %s first; using its copy", root)
    _check_cached(root, config)
    return root
