"""Counting one split's maps against its ground truth, and the saved-maps driver (no torch).

:class:`EvalSettings` (what the counters need from a protocol), :class:`GroundTruth` (a split's
boxes and masks at the evaluation size) and :func:`count_image` feed the counters of
:mod:`wsolbench.metrics`, one call per image, after the map has been resized to the protocol size
and normalized. :func:`evaluate_saved_maps` (``wsolbench evaluate-maps``) reads maps saved by any
codebase and counts them, in the worker processes of :func:`start_counting_workers` when it is
given them; this module imports no torch, so a worker starts in the time numba's cached engine
takes to load. A method's predictions are counted by
:mod:`wsolbench.evaluate` through the same functions.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wsolbench import metrics
from wsolbench.data.metadata import SplitMetadata
from wsolbench.metrics.maps import MapRangeError
from wsolbench.protocol import Protocol
from wsolbench.util.heap import keep_freed_memory
from wsolbench.util.progress import progress as progress_bar


@dataclass(frozen=True)
class EvalSettings:
    """What the counters need from a protocol (or from ``evaluate-maps`` flags)."""

    size: tuple[int, int]  # (H, W) maps are evaluated at
    step: float
    iou_thresholds: tuple[int, ...]
    boxes: bool
    masks: bool
    map_resize: str = "bicubic"  # how maps reach ``size`` (the protocol's map_resize)

    @classmethod
    def from_protocol(cls, protocol: Protocol) -> EvalSettings:
        return cls(
            protocol.eval_size,
            protocol.threshold_step,
            protocol.iou_thresholds,
            protocol.has_boxes,
            protocol.has_masks,
            protocol.map_resize,
        )


class GroundTruth:
    """Per-image ground truth of a split at the evaluation size: rescaled boxes and/or masks."""

    def __init__(self, meta: SplitMetadata, settings: EvalSettings, mask_root: Path | None = None):
        if settings.boxes and meta.boxes is None:
            raise ValueError(
                f"{meta.split_dir}: the protocol needs boxes but localization.txt has masks"
            )
        if settings.masks and meta.masks is None:
            raise ValueError(
                f"{meta.split_dir}: the protocol needs masks but the split has no mask records "
                "(localization.txt in mask format, or mask_localization.txt)"
            )
        if settings.masks and mask_root is None:
            raise ValueError("mask evaluation needs the mask root folder (--masks DIR)")
        self.meta = meta
        self.settings = settings
        self.mask_root = mask_root

    def select(self, image_ids: list[str]) -> GroundTruth:
        """The ground truth of ``image_ids`` alone (what a worker is sent with their maps)."""
        return GroundTruth(self.meta.select(image_ids), self.settings, self.mask_root)

    def boxes(self, image_id: str) -> np.ndarray | None:
        """[G, 4] int boxes in evaluation-size pixel coordinates, or None without box evaluation."""
        if not self.settings.boxes:
            return None
        height, width = self.settings.size
        return metrics.rescale_boxes(
            self.meta.boxes[image_id], self.meta.sizes[image_id], (width, height)
        )

    def masks(self, image_id: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(foreground, ignore) [H, W] bool, or (None, None) without mask evaluation.

        Every file is checked as it is read (:func:`wsolbench.metrics.pxap.decode_mask`): a mask,
        of the image's size in ``image_sizes.txt`` when the split gives sizes.

        Raises:
            MaskError: the first file of the image that is missing or not a mask, named.
        """
        if not self.settings.masks:
            return None, None
        record = self.meta.masks[image_id]
        image_size = self.meta.sizes.get(image_id)
        foreground = np.zeros(self.settings.size, dtype=bool)
        for path in record.mask_paths:
            foreground |= metrics.read_mask(self.mask_root / path, self.settings.size, image_size)
        ignore = None
        if record.ignore_path:
            ignore = metrics.read_mask(
                self.mask_root / record.ignore_path, self.settings.size, image_size
            )
        return foreground, ignore


def new_counter(settings: EvalSettings) -> metrics.SplitCounter:
    return metrics.SplitCounter(metrics.threshold_grid(settings.step), settings.iou_thresholds)


def count_image(
    counter: metrics.SplitCounter,
    truth: GroundTruth,
    image_id: str,
    scoremap: np.ndarray,
    topk: list[int] | None = None,
) -> dict:
    """Add one image's (already normalized, evaluation-size) map to the counter; returns what the
    image added (:meth:`wsolbench.metrics.SplitCounter.update`)."""
    foreground, ignore = truth.masks(image_id)
    return counter.update(
        scoremap,
        gt_boxes=truth.boxes(image_id),
        label=truth.meta.labels[image_id] if topk is not None else None,
        topk=topk,
        foreground=foreground,
        ignore=ignore,
    )


def count_batch(
    counter: metrics.SplitCounter,
    truth: GroundTruth,
    indices: list[int],
    maps: np.ndarray,
    topk: list[list[int]] | None,
    records=None,
) -> None:
    """Resize and normalize each predicted map to the evaluation size, then count it.

    Args:
        indices: positions of the batch's images in the split (``meta.image_ids``).
        maps: [B, h, w] predicted maps, any size and range.
        topk: per image, the top-5 predicted classes (:func:`wsolbench.evaluate.predict_batch`),
            or None.
        records: keeps each image's outcome too (``records.add(image_id, outcome)``: per-image
            records), when given.
    """
    for row, index in enumerate(indices):
        image_id = truth.meta.image_ids[index]
        scoremap = metrics.normalize_map(
            maps[row], truth.settings.size, f"image '{image_id}'", truth.settings.map_resize
        )
        outcome = count_image(counter, truth, image_id, scoremap, topk[row] if topk else None)
        if records is not None:
            records.add(image_id, outcome)


class MapFileError(ValueError):
    """A saved map is missing or invalid; the message names the file."""


def saved_map_path(maps_dir: Path, image_id: str) -> Path:
    """``<maps>/<image_id>.npy``; ids keep subfolders and extension (``a/b.jpg.npy``)."""
    return Path(_saved_map_file(maps_dir, image_id))


def _saved_map_file(maps_dir: Path | str, image_id: str) -> str:
    """:func:`saved_map_path` as a string, without building a Path (``os.path.join`` joins as
    ``Path`` does: an absolute id replaces the folder)."""
    return os.path.join(maps_dir, f"{image_id}.npy")


#: The first bytes of every file ``numpy.save`` writes.
_NPY_MAGIC = b"\x93NUMPY"


def _read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file (never unpickled), or a :class:`MapFileError` naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise MapFileError(
            f"map {path} does not exist (one <image_id>.npy per image is needed)"
        ) from None
    except OSError as exc:
        raise MapFileError(f"map {path} is not a readable .npy array: {exc}") from None
    if not data.startswith(_NPY_MAGIC):
        raise MapFileError(
            f"map {path} is not a NumPy array file (.npy); save each map with "
            "numpy.save(path, array)"
        )
    header = _npy_header(data)
    layout = _npy_layouts.get(header)
    if layout is not None and len(data) >= layout[0] + layout[1].itemsize * math.prod(layout[2]):
        return _array_at(data, *layout)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy's advice to unpickle it is not ours to give
            raise MapFileError(
                f"map {path} holds Python objects (an object array), not numbers; save a "
                "numeric array"
            ) from None
        raise MapFileError(f"map {path} is not a readable .npy array: {exc}") from None
    except (OSError, EOFError) as exc:
        raise MapFileError(f"map {path} is not a readable .npy array: {exc}") from None
    if len(_npy_layouts) < 64:  # a folder's maps share one or a few headers
        _npy_layouts[header] = (len(header), array.dtype, array.shape, np.isfortran(array))
    return array


#: the layout (data offset, dtype, shape, Fortran order) of every .npy header numpy has read
#: here; a file with the same header bytes is read without parsing it again (numpy's parser
#: evaluates the header as a Python literal: half the time of reading a 224 x 224 map)
_npy_layouts: dict[bytes, tuple] = {}


def _npy_header(data: bytes) -> bytes:
    """The header of a .npy file's bytes: magic, version, length and the header dict (versions
    1.0: a 2-byte length, 2.0 and 3.0: 4 bytes); shorter when the file is cut off."""
    if data[6:7] == b"\x01":
        return data[: 10 + int.from_bytes(data[8:10], "little")]
    return data[: 12 + int.from_bytes(data[8:12], "little")]


def _array_at(data: bytes, offset: int, dtype, shape, fortran: bool) -> np.ndarray:
    """The (read-only) array a .npy file's bytes hold after its header, as np.load reads it."""
    array = np.frombuffer(data, dtype, math.prod(shape), offset)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def load_saved_map(
    path: Path, size: tuple[int, int], normalize: bool, resize: str = "bicubic"
) -> np.ndarray:
    """Read one saved map and bring it to the protocol's form.

    A map of the protocol size is used as given (as the reference evaluator does), so it must
    already hold finite values in [0, 1] — unless ``normalize`` asks to min-max normalize every map.
    A map of another size is resized (``resize``: bicubic unless the protocol says bilinear) and
    normalized. A map with more than two axes loses
    its axes of length 1 (``[1, h, w]``, ``[h, w, 1]``). NaN or inf anywhere is an error either
    way: normalizing never turns it into numbers.

    Raises:
        MapFileError: naming the file: missing, not a ``.npy`` array of real numbers, not 2-D,
            empty, non-finite, or (used as given) outside [0, 1].
    """
    scoremap = _read_npy(path)
    if scoremap.ndim > 2:
        scoremap = np.squeeze(scoremap)
    name = f"map {path}"
    try:
        if scoremap.shape != tuple(size) or normalize:
            return metrics.normalize_map(scoremap, size, name, resize)
        metrics.check_map(scoremap, name)
        return scoremap
    except MapRangeError as exc:
        raise MapFileError(
            f"{exc}; maps of the protocol size are used as given, so they must hold values in "
            "[0, 1] — pass --normalize to min-max normalize every map instead"
        ) from None
    except ValueError as exc:
        raise MapFileError(str(exc)) from None


#: maps per task of a worker process (small enough for a progress bar, large enough that handing
#: a task over costs nothing next to counting it)
SAVED_MAPS_CHUNK = 256
#: a worker process starts in about a second (a spawned interpreter loading numpy, OpenCV and the
#: compiled engine): below this many map pixels to count per worker (200 maps of 224 x 224) it
#: would cost more than it saves
PIXELS_PER_WORKER = 200 * 224 * 224


def worker_count(requested: int, maps: int, size: tuple[int, int]) -> int:
    """How many processes count ``maps`` maps of ``size`` (H, W): at most ``requested``, and
    one (this process alone) when each worker would get fewer than :data:`PIXELS_PER_WORKER`."""
    return max(1, min(requested, maps * size[0] * size[1] // PIXELS_PER_WORKER))


# what a worker process of a run counts against, set once by its initializer: the split's ground
# truth (saved maps carry theirs with each chunk)
_worker_truth: GroundTruth | None = None


def _start_worker(truth: tuple | None = None) -> None:
    """A counting process's start: its settings, its ground truth (``truth``: GroundTruth's
    arguments) if given, and the compiled engine loaded now rather than at the first map."""
    global _worker_truth
    cv2.setNumThreads(1)  # the workers are the parallelism; OpenCV's own threads would contend
    keep_freed_memory()  # each map's work arrays reuse the last one's pages
    if truth is not None:
        _worker_truth = GroundTruth(*truth)
    _load_engine()


def _load_engine() -> None:
    """Count two tiny maps (float32 as saved, float64 as normalized): numba's import and its
    disk cache of the kernels take about a second, which a worker then spends while its parent
    is still reading the split or predicting."""
    counter = metrics.BoxCounter(metrics.threshold_grid(0.5), (50,))
    for dtype in (np.float32, np.float64):
        scoremap = np.zeros((4, 4), dtype)
        scoremap[1:3, 1:3] = 1
        counter.update(scoremap, np.array([[1, 1, 2, 2]]))


def _worker_pool(workers: int, truth: GroundTruth | None = None) -> ProcessPoolExecutor:
    # spawned, not forked: this process may hold torch's and OpenCV's thread pools
    args = None if truth is None else (truth.meta, truth.settings, truth.mask_root)
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(args,),
    )


def start_counting_workers(
    requested: int, maps: int, size: tuple[int, int]
) -> ProcessPoolExecutor | None:
    """Start the processes that count ``maps`` saved maps of ``size`` (:func:`worker_count`),
    for :func:`evaluate_saved_maps`; None when this process alone counts them. The caller
    shuts the pool down.

    Each process loads the compiled engine as it starts, so a caller that starts them before
    reading the split's metadata (a second each at 50,000 maps) has them ready when it is done.
    """
    workers = worker_count(requested, maps, size)
    if workers == 1:
        return None
    pool = _worker_pool(workers)
    try:
        # a spawning pool starts a process per task submitted while none is idle: all of them now
        for _ in range(workers):
            pool.submit(int)
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    return pool


class _Outcomes(list):
    """(image id, outcome) pairs, collected as :func:`count_batch`'s ``records``."""

    def add(self, image_id: str, outcome: dict) -> None:
        self.append((image_id, outcome))


def _count_predicted(
    indices: list[int], maps: np.ndarray, topk, truth: GroundTruth | None = None
) -> tuple[metrics.SplitCounter, _Outcomes]:
    """Count one batch of predicted maps (in a worker: against its ground truth); returns the
    batch's counter and each image's outcome, in the batch's order."""
    truth = truth or _worker_truth
    counter, outcomes = new_counter(truth.settings), _Outcomes()
    count_batch(counter, truth, indices, maps, topk, outcomes)
    return counter, outcomes


class CountingPool:
    """Counts a method's predicted maps, batch by batch, in worker processes while the method
    predicts the next batches; :meth:`counted` hands the batches back in submission order, so
    the merged counts and the per-image records are identical for any number of workers.

    With one worker everything is counted in this process, at submission. At most
    ``2 x workers`` batches wait for a worker (their maps are held meanwhile).
    """

    def __init__(self, truth: GroundTruth, workers: int):
        self.truth, self.workers = truth, workers
        self.pool = _worker_pool(workers, truth) if workers > 1 else None
        self.pending: list = []

    def submit(self, indices: list[int], maps: np.ndarray, topk) -> None:
        if self.pool is None:
            self.pending.append(_count_predicted(indices, maps, topk, self.truth))
        else:
            self.pending.append(self.pool.submit(_count_predicted, indices, maps, topk))

    def counted(self, wait: bool = False):
        """Yield ``(counter, outcomes)`` of the finished batches in order: those ready now (and
        any beyond the queue's bound), or, with ``wait``, every submitted batch."""
        while self.pending:
            head = self.pending[0]  # a worker's Future, or a batch counted here
            queued = isinstance(head, Future)
            ready = not queued or head.done()
            if not (wait or ready or len(self.pending) > 2 * self.workers):
                return
            self.pending.pop(0)
            yield head.result() if queued else head

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _count_saved_chunk(
    truth: GroundTruth, maps_dir: Path, normalize: bool, predictions: dict | None
) -> metrics.SplitCounter:
    """Count one chunk of saved maps: those of the images of ``truth`` (its metadata holds the
    chunk's images only, so a worker is sent what it counts and nothing else)."""
    settings = truth.settings
    counter = new_counter(settings)
    for image_id in truth.meta.image_ids:
        path = saved_map_path(maps_dir, image_id)
        scoremap = load_saved_map(path, settings.size, normalize, settings.map_resize)
        topk = predictions[image_id] if predictions is not None else None
        count_image(counter, truth, image_id, scoremap, topk)
    return counter


def _missing_maps(maps_dir: Path, image_ids: list[str]) -> list[str]:
    """The ids whose map (:func:`saved_map_path`) is not a file, in order: one listing per
    folder rather than a file-system call and a Path per map (50,000 of them take half a
    second)."""
    root = os.fspath(maps_dir)
    files: dict[str, set[str]] = {}
    missing = []
    for image_id in image_ids:
        folder, name = os.path.split(_saved_map_file(root, image_id))
        if folder not in files:
            try:
                with os.scandir(folder) as entries:
                    files[folder] = {entry.name for entry in entries if entry.is_file()}
            except (OSError, ValueError):  # no such folder, not one, or a NUL byte in its name
                files[folder] = set()
        if name not in files[folder]:
            missing.append(image_id)
    return missing


def evaluate_saved_maps(
    maps_dir: Path,
    meta: SplitMetadata,
    settings: EvalSettings,
    *,
    mask_root: Path | None = None,
    normalize: bool = False,
    predictions: dict[str, list[int]] | None = None,
    pool: ProcessPoolExecutor | None = None,
    progress: bool = True,
) -> dict:
    """Count saved maps ``<maps_dir>/<image_id>.npy`` over one split; returns the counts record.

    Saved maps carry no class scores: Top-k metrics (classification and Top-1 / Top-5 Loc) come
    from ``predictions`` (image id -> predicted classes, best first, for every image;
    :func:`wsolbench.data.metadata.parse.read_predictions`), absent without.

    With a ``pool`` (:func:`start_counting_workers`) chunks of :data:`SAVED_MAPS_CHUNK` maps are
    read and counted by its processes (each map is read by the process that counts it, so
    memory stays flat however many maps there are), and the chunks' integer counts are summed
    in order: the result is identical for any number of workers. Without, this process counts.
    """
    missing = _missing_maps(maps_dir, meta.image_ids)
    if missing:
        raise MapFileError(
            f"{len(missing)} of {len(meta.image_ids)} maps are missing in {maps_dir}, e.g. "
            f"{saved_map_path(maps_dir, missing[0])}; save one <image_id>.npy per image id of "
            f"{meta.split_dir / 'image_ids.txt'}"
        )
    truth = GroundTruth(meta, settings, mask_root)
    ids = list(meta.image_ids)
    chunks = [ids[i : i + SAVED_MAPS_CHUNK] for i in range(0, len(ids), SAVED_MAPS_CHUNK)]
    jobs = [
        (
            truth.select(chunk),
            maps_dir,
            normalize,
            None if predictions is None else {i: predictions[i] for i in chunk},
        )
        for chunk in chunks
    ]
    if pool is None:
        counted = (_count_saved_chunk(*job) for job in jobs)
    else:
        counted = pool.map(_count_saved_chunk, *zip(*jobs, strict=True))
    bar = progress_bar(total=len(ids), desc="maps", enabled=progress, unit="map")
    total = new_counter(settings)
    try:
        for chunk, counter in zip(chunks, counted, strict=True):
            total.merge(counter)
            bar.update(len(chunk))
    finally:
        bar.close()
    return total.to_dict()
