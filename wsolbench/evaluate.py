"""Evaluating a method: its predictions over one split → counts.

The predictions feed the counters of :mod:`wsolbench.counting` (the same as saved maps), one call
per image, after the harness has resized the map to the protocol size and normalized it — so no
method can drift from the protocol. This is a plain torch loop; the training engine reuses the
counters through its metric adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from wsolbench.counting import CountingPool, EvalSettings, GroundTruth, new_counter, worker_count
from wsolbench.data.dataset import WSOLImageDataset
from wsolbench.data.metadata import SplitMetadata
from wsolbench.method import WSOLMethod
from wsolbench.metrics.maps import NonFiniteError
from wsolbench.results.per_image import RecordCollector
from wsolbench.util.loader import pin_memory, resolve_workers
from wsolbench.util.progress import progress as progress_bar

logger = logging.getLogger(__name__)


def _first_non_finite(outputs: dict[str, torch.Tensor]) -> tuple[int, str] | None:
    """(row, what) of the first image of a batch whose outputs (name -> [B, ...]) are not all
    finite, ``what`` naming each output of that image that is not; None when all are finite."""
    bad = {what: ~torch.isfinite(t).reshape(len(t), -1).all(1) for what, t in outputs.items()}
    firsts = [int(rows.nonzero()[0, 0]) for rows in bad.values() if rows.any()]
    if not firsts:
        return None
    row = min(firsts)
    return row, " and ".join(what for what, rows in bad.items() if rows[row])


def run_predict(method: WSOLMethod, images: torch.Tensor, labels: torch.Tensor):
    """``method.predict`` with autograd on exactly when the method declares
    ``capabilities.needs_grad_at_inference``.

    Raises:
        ValueError: ``predict`` takes gradients but the method does not declare it (torch's own
            "does not require grad" names neither the method nor the fix).
    """
    needs_grad = method.capabilities.needs_grad_at_inference
    try:
        with torch.set_grad_enabled(needs_grad):
            return method.predict(images, labels)
    except RuntimeError as exc:
        if needs_grad or "does not require grad" not in str(exc):
            raise
        raise ValueError(
            f"method {method.name or type(method).__name__!r}: predict takes gradients ({exc}), "
            "but the harness runs it without autograd unless the method declares it: set "
            "capabilities = Capabilities(needs_grad_at_inference=True)"
        ) from None


def predict_batch(
    method: WSOLMethod,
    images: torch.Tensor,
    labels: torch.Tensor,
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[list[int]] | None]:
    """Run ``method.predict`` on a batch and bring its output to numpy.

    Methods whose ``capabilities.needs_grad_at_inference`` is True run with autograd enabled
    (also inside a caller's ``no_grad``); their gradients are dropped at once, so memory stays
    flat over batches.

    A NaN or inf in the maps or the class scores is never scored: one sum per batch (on the
    device, before the copy to the host) checks them; only when it is not finite are the images
    searched, to name the first bad one.

    Args:
        names: how an error names each image of the batch (e.g. its id and split); default: its
            position in the batch.

    Returns:
        maps: [B, h, w] float32, as predicted (not yet resized or normalized).
        topk: per image, the indices of the (up to) 5 best classes, best first; None when the method
            does not classify.

    Raises:
        NonFiniteError: naming the first image whose map or class scores hold NaN or inf.
        ValueError: ``predict`` takes gradients but the method does not declare it.
    """
    prediction = run_predict(method, images, labels)
    maps = prediction.maps.detach().float()
    outputs = {"map": maps}
    if prediction.logits is not None:
        outputs["class scores (logits)"] = prediction.logits.detach()
    # A sum is NaN or inf when a term is (or when finite terms overflow, which the exact search
    # then tells apart): one cheap reduction and one device sync per batch. (A full isfinite pass
    # costs 30x more on a CPU: 31 ms against 1 ms for [64, 224, 224] maps.)
    total = torch.stack([t.sum(dtype=torch.float32) for t in outputs.values()]).sum()
    culprit = None if torch.isfinite(total) else _first_non_finite(outputs)
    if culprit is not None:
        row, what = culprit
        name = names[row] if names is not None else f"{row} of the batch"
        raise NonFiniteError(
            f"image {name}: NaN or inf in the model's {what}; a non-finite output is never "
            "scored: the model diverged in training or its weights are corrupt (a run's log "
            "shows when its loss stopped being finite), or predict itself makes it (a division "
            "by a zero range, a log of 0: `wsolbench check` runs it on random weights)"
        )
    topk = None
    if prediction.logits is not None:
        k = min(5, prediction.logits.shape[1])
        topk = prediction.logits.detach().topk(k, dim=1).indices.cpu().tolist()
    if method.capabilities.needs_grad_at_inference:
        method.zero_grad(set_to_none=True)
    return maps.cpu().numpy(), topk


def evaluate_method(
    method: WSOLMethod,
    meta: SplitMetadata,
    image_root: Path,
    settings: EvalSettings,
    *,
    mask_root: Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    num_workers: int | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    records: RecordCollector | None = None,
    count_workers: int = 1,
) -> dict:
    """Predict over one split (or one shard of it) and count; returns the counts record.

    Args:
        num_workers: data-loader processes; None follows the machine
            (:func:`~wsolbench.util.loader.auto_workers`: none on a small CPU machine, most cores
            on a GPU host, whose batches are then pinned).
        count_workers: processes that count the maps while the method predicts the next batches
            (:class:`~wsolbench.counting.CountingPool`; fewer when the split is too small to pay
            for their start-up, :func:`~wsolbench.counting.worker_count`); the counts and
            records are the same for any number.
        shard: (rank, world size): this process evaluates images ``rank, rank + world, ...``; the
            ranks' counts merge (:func:`wsolbench.metrics.merge_counts`) into those of the whole
            split, each image counted exactly once.
        records: also keep every image's outcome there (:mod:`wsolbench.results.per_image`).
    """
    truth = GroundTruth(meta, settings, mask_root)
    # A method that declares ``native_input`` sees every image at its own size (so one per batch);
    # its maps are resized to the evaluation size like any other's.
    native = bool(method.native_input)
    size = None if native else settings.size
    batch_size = 1 if native else batch_size
    dataset = WSOLImageDataset(meta, image_root, size, method.image_mean, method.image_std)
    rank, world = shard
    if world > 1:
        dataset = Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=resolve_workers(num_workers, str(device)),
        pin_memory=pin_memory(str(device)),
    )
    counter = new_counter(settings)
    method.eval()
    method.to(device)
    batches = progress_bar(
        loader, desc=f"eval {meta.split_dir.name}", enabled=progress, unit="batch", leave=False
    )
    pool = CountingPool(truth, worker_count(count_workers, len(dataset), settings.size))

    def merge(wait: bool = False) -> None:
        for part, outcomes in pool.counted(wait):
            counter.merge(part)
            for image_id, outcome in outcomes if records is not None else ():
                records.add(image_id, outcome)

    try:
        for batch in batches:
            indices = batch["index"].tolist()
            names = [f"'{meta.image_ids[i]}' of {meta.split_dir}" for i in indices]
            maps, topk = predict_batch(
                method, batch["image"].to(device), batch["label"].to(device), names
            )
            pool.submit(indices, maps, topk)
            merge()
        merge(wait=True)
    finally:
        pool.close()
    return counter.to_dict()
