"""Per-image records: what each evaluated image contributed to a split's counts.

The counts record of a split (:mod:`wsolbench.metrics`) is a sum over images; keeping every
image's term lets any metric be recomputed on any subset or reweighting of the images, under any
threshold policy: bootstrap intervals and paired tests (:mod:`wsolbench.results.bootstrap`). Summed
over the images, the records give back the stored counts exactly (:meth:`SplitRecords.counts`;
``run`` checks this before writing).

Per image, sorted by image id (so the file does not depend on batch order or process count):

- ``multi`` / ``largest``: bool [n_iou, T]: does the image's best box reach IoU threshold δ at
  threshold τ, under the multi-contour (MaxBoxAccV2) and largest-contour (MaxBoxAcc, GT-known)
  rules; stored bit-packed along τ.
- ``top1`` / ``top5``: bool, classification hits (methods that classify). Top-k Loc of an image is
  ``largest[δ=50] & topk``.
- ``fg_hist`` / ``bg_hist``: int [T + 2], the image's PxAP histograms (mask datasets). A run
  made with ``--summed-pxap`` keeps them summed over the images only (in the counts below): its
  PxAP is exact, but cannot be resampled image by image. At the 1,000-threshold grid they are
  ~0.66 KB per image and near their entropy (the multiset of the image's quantised scores), 70 %
  of a run's records: a run that feeds only a table over seeds (an ablation) need not keep them.

Beside them, each split's **counts** (the sums the result's metrics came from, the layout of
:mod:`wsolbench.metrics`), one member per leaf: ``<split>/counts/<dotted key>``. A schema-3
``result.json`` does not repeat them; it names this file by its sha256 (``per_image``), and
:func:`load_counts` reads them back through that digest. Format 1 files (schema-2 results, whose
``result.json`` holds the counts) have no counts members.

One file per run, ``<work_dir>/per_image.npz`` (an ``.npz`` with LZMA-compressed members, no
pickled objects; ``numpy.load`` reads it), keys ``<split>/<field>``. Sizes, measured by
``benchmarks/bench_bootstrap.py``, are in the README.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from wsolbench.config import dotted_leaves
from wsolbench.util.atomic import write_bytes_atomic

PER_IMAGE_FILE = "per_image.npz"
FORMAT_VERSION = 2  # 2: each split's counts stored beside its records
COUNTS = "counts"  # members <split>/counts/<dotted key of the counts record>


class PerImageError(ValueError):
    """A per-image records file is missing, altered or inconsistent with its result."""


class RecordCollector:
    """Collects the outcomes of :meth:`wsolbench.metrics.SplitCounter.update`, image by image."""

    def __init__(self, step: float, iou_thresholds: list[int]):
        self.step, self.iou_thresholds = float(step), list(iou_thresholds)
        self.ids: list[str] = []
        self.outcomes: list[dict] = []

    def add(self, image_id: str, outcome: dict) -> None:
        self.ids.append(image_id)
        self.outcomes.append(outcome)

    def records(self) -> SplitRecords:
        """The collected images as arrays, sorted by image id."""
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)

        def stack(field: str, dtype) -> np.ndarray | None:
            if not self.outcomes or field not in self.outcomes[0]:
                return None
            return np.asarray([self.outcomes[i][field] for i in order], dtype=dtype)

        return SplitRecords(
            image_ids=np.asarray([self.ids[i] for i in order], dtype=str),
            step=self.step,
            iou_thresholds=self.iou_thresholds,
            multi=stack("multi", bool),
            largest=stack("largest", bool),
            top1=stack("top1", bool),
            top5=stack("top5", bool),
            fg_hist=stack("fg_hist", np.int64),
            bg_hist=stack("bg_hist", np.int64),
        )


@dataclass
class SplitRecords:
    """Every image's outcome on one split (see the module docstring for the fields; [N] first).

    Attributes:
        image_ids: [N] str, sorted.
        step, iou_thresholds: the split's threshold grid step and IoU thresholds (percent).
        multi, largest: bool [N, n_iou, T] or None (no boxes).
        top1, top5: bool [N] or None (no class predictions).
        fg_hist, bg_hist: int64 [N, T + 2] or None (no masks).
    """

    image_ids: np.ndarray
    step: float
    iou_thresholds: list[int]
    multi: np.ndarray | None = None
    largest: np.ndarray | None = None
    top1: np.ndarray | None = None
    top5: np.ndarray | None = None
    fg_hist: np.ndarray | None = None
    bg_hist: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    @cached_property
    def mask_terms(self) -> np.ndarray | None:
        """float64 [N, 2 (T + 2)]: each image's foreground then background histogram, what the
        mask metrics sum (one array for all of them, so a bootstrap sums it once per resample);
        None without masks."""
        if self.fg_hist is None:
            return None
        return np.concatenate([self.fg_hist, self.bg_hist], axis=1).astype(np.float64)

    @staticmethod
    def merge(parts: list[SplitRecords]) -> SplitRecords:
        """One split's records from disjoint shards (torchrun ranks), sorted by image id."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise PerImageError("no per-image records to merge")
        ids = np.concatenate([p.image_ids for p in parts])
        order = np.argsort(ids, kind="stable")

        def cat(field: str):
            arrays = [getattr(p, field) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)[order]

        fields = ("multi", "largest", "top1", "top5", "fg_hist", "bg_hist")
        first = parts[0]
        return SplitRecords(
            ids[order], first.step, first.iou_thresholds, **{f: cat(f) for f in fields}
        )

    def counts(self) -> dict:
        """The counts record these images sum to (the layout of :mod:`wsolbench.metrics`)."""
        record: dict = {
            "n_images": len(self),
            "step": self.step,
            "iou_thresholds": list(self.iou_thresholds),
        }
        if self.multi is not None:
            ious = list(enumerate(self.iou_thresholds))
            box = {
                "multi": {str(d): _column_sums(self.multi[:, i]) for i, d in ious},
                "largest": {str(d): _column_sums(self.largest[:, i]) for i, d in ious},
            }
            if self.top1 is not None and 50 in self.iou_thresholds:
                known = self.largest[:, self.iou_thresholds.index(50)]
                box["top1_loc"] = _column_sums(known & self.top1[:, None])
                box["top5_loc"] = _column_sums(known & self.top5[:, None])
            record["box"] = box
        if self.top1 is not None:
            record["cls"] = {
                "n": len(self),
                "top1": int(self.top1.sum()),
                "top5": int(self.top5.sum()),
            }
        if self.fg_hist is not None:
            record["mask"] = {
                "fg_hist": self.fg_hist.sum(axis=0).tolist(),
                "bg_hist": self.bg_hist.sum(axis=0).tolist(),
            }
        return record


def _column_sums(bits: np.ndarray) -> list[int]:
    return bits.sum(axis=0, dtype=np.int64).tolist()


def _check_against(records: SplitRecords, counts: dict, where: str) -> None:
    """Raise unless the records sum to the stored counts (what each split's metrics came from)."""
    from wsolbench.metrics import SplitCounter

    expected = SplitCounter.from_dict(counts).to_dict()
    if records.fg_hist is None:
        expected.pop("mask", None)  # --summed-pxap: the histograms live in the counts alone
    if records.counts() != expected:
        raise PerImageError(
            f"{where}: the per-image records do not add up to the stored counts; the file does "
            "not belong to this result"
        )


def _smallest_uint(values: np.ndarray) -> np.ndarray:
    """Pixel counts in the narrowest unsigned type that holds them (most bins hold a few)."""
    top = int(values.max(initial=0))
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values.astype(np.uint64)


def _npz_lzma(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (readable by ``np.load``) whose members are LZMA-compressed: per-image
    histograms shrink about 3x more than with ``savez_compressed``'s deflate."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            # a fixed timestamp: the same records give the same bytes (and sha256)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_LZMA
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def save_records(
    path: Path,
    splits: dict[str, SplitRecords],
    counts: dict[str, dict],
    *,
    summed_pxap: bool = False,
) -> str:
    """Write a run's records and counts atomically, after checking the records against the counts.

    Args:
        summed_pxap: keep the PxAP histograms summed over images only (in the counts), not per
            image (``run --summed-pxap``; see the module docstring).

    Returns:
        The file's sha256 hex (for ``result.json``).
    """
    arrays: dict[str, np.ndarray] = {"format_version": np.asarray(FORMAT_VERSION)}
    for split, records in splits.items():
        _check_against(records, counts[split], f"{path} ({split})")
        arrays[f"{split}/image_ids"] = records.image_ids
        arrays[f"{split}/step"] = np.asarray(records.step)
        arrays[f"{split}/iou_thresholds"] = np.asarray(records.iou_thresholds, dtype=np.int64)
        for field in ("multi", "largest"):
            bits = getattr(records, field)
            if bits is not None:
                arrays[f"{split}/{field}"] = np.packbits(bits, axis=-1)
        for field in ("top1", "top5"):
            if getattr(records, field) is not None:
                arrays[f"{split}/{field}"] = getattr(records, field)
        for field in ("fg_hist", "bg_hist"):
            if getattr(records, field) is not None and not summed_pxap:
                arrays[f"{split}/{field}"] = _smallest_uint(getattr(records, field))
    for split, split_counts in counts.items():
        for key, value in dotted_leaves(split_counts).items():
            arrays[f"{split}/{COUNTS}/{key}"] = np.asarray(value)
    data = _npz_lzma(arrays)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _open(path: Path, sha256: str) -> np.lib.npyio.NpzFile:
    """The records file, checked to be the one its result names (members read on access)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PerImageError(
            f"{path}: per-image records unreadable ({exc.strerror or exc}); `wsolbench run` "
            "writes them beside result.json, which names them by sha256: copy the run's "
            f"{path.name} beside it, or re-run or re-evaluate (`wsolbench eval`) to make them"
        ) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PerImageError(f"{path}: not the file its result.json names (sha256 differs)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise PerImageError(f"{path}: not a per-image records file ({exc})") from None


def load_counts(path: Path, sha256: str) -> dict[str, dict]:
    """Each split's counts record, read from a records file with the given sha256.

    Raises:
        PerImageError: the file is missing, altered, or holds no counts (format 1: its result
            stores them itself).
    """
    with _open(path, sha256) as archive:
        counts: dict[str, dict] = {}
        try:
            for key in archive.files:
                split, _, rest = key.partition("/")
                if not rest.startswith(f"{COUNTS}/"):
                    continue
                *parents, leaf = rest.removeprefix(f"{COUNTS}/").split(".")
                node = counts.setdefault(split, {})
                for parent in parents:
                    node = node.setdefault(parent, {})
                node[leaf] = archive[key].tolist()
        except (ValueError, OSError) as exc:
            raise PerImageError(f"{path}: not a per-image records file ({exc})") from None
    if not counts:
        raise PerImageError(
            f"{path}: holds no counts (a format-1 file, whose result.json stores them); its "
            "result.json must be the schema-2 one written with it"
        )
    return counts


def load_records(path: Path, sha256: str, counts: dict[str, dict]) -> dict[str, SplitRecords]:
    """Read a run's records, checked against the sha256 and the counts its result stores.

    Raises:
        PerImageError: the file is missing, altered (another hash), unreadable, or does not add up
            to the counts.
    """
    path = Path(path)
    with _open(path, sha256) as archive:
        try:
            arrays = {key: archive[key] for key in archive.files if f"/{COUNTS}/" not in key}
        except (ValueError, OSError) as exc:
            raise PerImageError(f"{path}: not a per-image records file ({exc})") from None
    splits = {}
    for split in sorted({key.split("/", 1)[0] for key in arrays if "/" in key}):
        step = float(arrays[f"{split}/step"])
        ious = [int(d) for d in arrays[f"{split}/iou_thresholds"]]
        n_tau = len(np.arange(0, 1, step))
        fields = {}
        for field in ("multi", "largest"):
            if f"{split}/{field}" in arrays:
                fields[field] = np.unpackbits(arrays[f"{split}/{field}"], axis=-1, count=n_tau)
                fields[field] = fields[field].astype(bool)
        for field in ("top1", "top5", "fg_hist", "bg_hist"):
            if f"{split}/{field}" in arrays:
                fields[field] = arrays[f"{split}/{field}"].astype(
                    np.int64 if "hist" in field else bool
                )
        records = SplitRecords(arrays[f"{split}/image_ids"], step, ious, **fields)
        if split in counts:
            _check_against(records, counts[split], f"{path} ({split})")
        splits[split] = records
    return splits


def copy_result(source: Path, target: Path) -> None:
    """Copy a finished run's ``result.json`` and its per-image records (when it has them) from the
    work dir ``source`` into the folder ``target`` (created): what a report keeps of a run.

    Each file is replaced whole (atomically), the records first: cut short, the folder holds the
    old result beside the new records, which the result's digest of its records refuses
    (``compare``), never a torn file. A run without records removes an earlier copy's."""
    target.mkdir(parents=True, exist_ok=True)
    records = source / PER_IMAGE_FILE
    if records.is_file():
        write_bytes_atomic(target / PER_IMAGE_FILE, records.read_bytes())
    else:
        (target / PER_IMAGE_FILE).unlink(missing_ok=True)
    write_bytes_atomic(target / "result.json", (source / "result.json").read_bytes())
