"""Pseudo-labels for TeD-Loc's FG/BG head: selection rules and the external teachers.

A teacher gives a class activation map for the ground-truth class on the student's patch grid;
:func:`select_pseudo_labels` turns it into per-cell labels 1 (foreground), 0 (background) and -1
(ignored). The ``self`` teacher lives in the method (a CAM classifier trained jointly, read through
an EMA copy); the two here are frozen and are never part of the method's state (they are held
outside the module tree, so neither checkpoints nor ``weights.pt`` contain them):

- :class:`RunTeacher` (``teacher: run:<work_dir>``): the method of a finished run (normally
  ``cam``), rebuilt from its ``config.yaml`` and ``weights.pt``; ``teacher: cam`` (the default) is
  the same on wsolbench's own cached ``cam`` run on the student's data
  (:mod:`wsolbench.blocks.cam_teacher`);
- :class:`ClipTeacher` (``teacher: clip``): ``clip_patch``'s map — cosine similarity of CLIP's
  patch embeddings along MaskCLIP's value path with the class's text embedding; meaningful only
  with real weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench.config import RUN_PREFIX
from wsolbench.method import TrainingData
from wsolbench.util.weights_source import describe

logger = logging.getLogger(__name__)

FG_RULES = ("otsu", "topk")


def minmax(maps: Tensor) -> Tensor:
    """Per-map min-max normalization of [B, N] (a constant map becomes 0)."""
    low = maps.amin(dim=1, keepdim=True)
    high = maps.amax(dim=1, keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-12)


def otsu_thresholds(values: Tensor) -> Tensor:
    """Otsu's threshold of each row of ``values`` [B, N], exact (no histogram bins).

    Every split of the sorted values into a lower and an upper class is scored by the
    between-class variance w0 · w1 · (μ0 − μ1)²; the threshold is the smallest value of the best
    upper class, so ``values >= threshold`` selects it (at least one cell; ties go up together).

    Returns:
        [B] thresholds.
    """
    ordered, _ = values.double().sort(dim=1)
    n = ordered.shape[1]
    if n == 1:
        return ordered[:, 0].to(values.dtype)
    cumulative = ordered.cumsum(dim=1)
    total = cumulative[:, -1:]
    k = torch.arange(1, n, device=values.device, dtype=torch.float64)  # lower class = first k
    low_sum = cumulative[:, :-1]
    mu0 = low_sum / k
    mu1 = (total - low_sum) / (n - k)
    score = (k / n) * (1 - k / n) * (mu0 - mu1) ** 2
    # a split between equal values is not a split: the threshold would cut a tie
    score = torch.where(ordered[:, 1:] > ordered[:, :-1], score, torch.full_like(score, -1.0))
    best = score.argmax(dim=1) + 1  # index of the first upper-class value
    return ordered.gather(1, best[:, None]).squeeze(1).to(values.dtype)


def select_pseudo_labels(
    maps: Tensor, fg_rule: str = "otsu", fg_ratio: float = 0.2, bg_ratio: float = 0.5
) -> Tensor:
    """Pseudo-labels from teacher maps on the patch grid.

    Args:
        maps: [B, N] teacher scores (any range; min-max normalized here).
        fg_rule: ``otsu`` (cells at or above the map's Otsu threshold) or ``topk`` (exactly
            ``round(fg_ratio · N)`` highest cells, at least one).
        fg_ratio: the foreground fraction of ``topk``.
        bg_ratio: exactly ``round(bg_ratio · N)`` lowest cells are background (fewer only where
            they would overlap the foreground, which wins).

    Returns:
        [B, N] int64: 1 foreground, 0 background, -1 ignored.
    """
    if fg_rule not in FG_RULES:
        raise ValueError(f"fg_rule: {fg_rule!r} is not one of {', '.join(FG_RULES)}")
    if not (0 <= fg_ratio <= 1 and 0 <= bg_ratio <= 1):
        raise ValueError(f"fg_ratio {fg_ratio} and bg_ratio {bg_ratio} must lie in [0, 1]")
    batch, n = maps.shape
    maps = minmax(maps.detach().float())
    # ranks by value, ties broken by cell index: the same map always gives the same labels
    order = maps.argsort(dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=maps.device).expand(batch, n))
    labels = torch.full((batch, n), -1, dtype=torch.long, device=maps.device)
    labels[rank < int(round(bg_ratio * n))] = 0
    if fg_rule == "otsu":
        foreground = maps >= otsu_thresholds(maps)[:, None]
    else:
        foreground = rank >= n - max(1, int(round(fg_ratio * n)))
    labels[foreground] = 1
    return labels


def _to_grid(maps: Tensor, grid: tuple[int, int]) -> Tensor:
    """[B, h, w] maps on another grid → [B, gh, gw] (area-averaged down, bilinear up)."""
    maps = maps[:, None].float()
    if maps.shape[-2] >= grid[0] and maps.shape[-1] >= grid[1]:
        return F.adaptive_avg_pool2d(maps, grid)[:, 0]
    return F.interpolate(maps, size=grid, mode="bilinear", align_corners=False)[:, 0]


def _renormalize(images: Tensor, source: tuple, target: tuple) -> Tensor:
    """Images normalized with ``source`` (mean, std) → normalized with ``target``."""
    if tuple(source) == tuple(target):
        return images
    s_mean, s_std = (torch.tensor(v, device=images.device).view(1, 3, 1, 1) for v in source)
    t_mean, t_std = (torch.tensor(v, device=images.device).view(1, 3, 1, 1) for v in target)
    return ((images * s_std + s_mean) - t_mean) / t_std


class RunTeacher:
    """The maps of a finished run's method (``teacher: run:<work_dir>``), frozen, in eval mode.

    Rebuilt by :func:`wsolbench.runs.rebuild.load_run` (the run's record and exported
    ``weights.pt``, pretrained loading off, weights checked).

    Args:
        work_dir: a finished run's folder holding ``config.yaml`` and ``weights.pt``.
        num_classes: must match the run's class count.
        image_norm: (mean, std) of the student's input, to renormalize for the teacher.
    """

    def __init__(self, work_dir: str | Path, num_classes: int, image_norm: tuple):
        from wsolbench.data.fingerprint import short
        from wsolbench.runs.rebuild import input_run, load_run, method_class, run_record

        folder = Path(work_dir).expanduser()
        try:
            record, _ = run_record(folder)
            if not method_class(record).capabilities.trainable:
                raise ValueError(f"method {record['method']!r} has no weights")
            loaded = load_run(folder, weights="exported")
        except (ValueError, OSError, KeyError) as exc:
            raise ValueError(
                f"teacher run:{work_dir}: {folder} must hold config.yaml and weights.pt of a "
                f"finished run of a trainable method (e.g. wsolbench run --method cam ... "
                f"--work-dir DIR): {exc}"
            ) from None
        if loaded.protocol.num_classes != num_classes:
            raise ValueError(
                f"teacher run:{work_dir}: the run has {loaded.protocol.num_classes} classes, "
                f"this protocol {num_classes}"
            )
        self.model = loaded.method.requires_grad_(False)
        self.norm = (tuple(self.model.image_mean), tuple(self.model.image_std))
        self.image_norm = image_norm
        # which teacher this is, by content: the student's result names it, and a resume with
        # another teacher behind the same path is refused (wsolbench.runs.execute checks
        # "pretrained"); the result embeds what rebuilds it (reproduce, on another machine)
        self.run = input_run(loaded)
        data = short(record.get("data_fingerprint"))
        self.source = describe("run", folder.name, self.run["weights_sha256"], [f"data {data}"])
        logger.info("teacher: %s from %s", self.source, folder.resolve())

    @torch.no_grad()
    def maps(self, images: Tensor, labels: Tensor, grid: tuple[int, int]) -> Tensor:
        """[B, gh, gw] maps of the GT class on the student's grid."""
        model = self.model.to(images.device)
        inputs = _renormalize(images.float(), self.image_norm, self.norm)
        return _to_grid(model.predict(inputs, labels).maps.float(), grid)


class ClipTeacher:
    """CLIP patch–text similarity (``teacher: clip``), frozen: ``clip_patch``'s map.

    The patch embeddings of CLIP's image tower along MaskCLIP's last-block value path
    (:func:`wsolbench.blocks.clip_vision.dense_embeddings`, the same function and input handling as
    ``clip_patch``), scored by cosine similarity with the target class's (un-orthogonalized)
    text embedding, then brought to the student's grid.
    """

    def __init__(self, loaded, class_embeddings: Tensor, image_norm: tuple):
        from wsolbench.blocks.clip_vision import vit_tower

        if loaded.source == "none":
            raise ValueError(
                "teacher clip needs real CLIP weights (-o text.pretrained=TAG or "
                "-o text.checkpoint=PATH); a random tower gives meaningless maps"
            )
        self.visual = vit_tower(loaded.model, loaded.name, "tedloc teacher clip")
        self.visual.eval().requires_grad_(False)
        self.text = F.normalize(class_embeddings.float(), dim=-1)
        self.norm = (tuple(loaded.mean), tuple(loaded.std))
        self.image_norm = image_norm
        self.source = f"clip:{loaded.source}"

    @torch.no_grad()
    def maps(self, images: Tensor, labels: Tensor, grid: tuple[int, int]) -> Tensor:
        """[B, gh, gw] cosine maps of the GT class (``clip_patch``'s, resampled to ``grid``)."""
        from wsolbench.blocks.clip_vision import dense_embeddings

        visual = self.visual.to(images.device)
        inputs = _renormalize(images.float(), self.image_norm, self.norm)
        _, patches, clip_grid = dense_embeddings(visual, inputs, "maskclip")
        text = self.text.to(patches.device)[labels]
        scores = torch.einsum("bnd,bd->bn", F.normalize(patches.float(), dim=-1), text)
        return _to_grid(scores.view(-1, *clip_grid), grid)


def external_teacher(
    teacher: str,
    num_classes: int,
    image_norm: tuple,
    loaded,
    class_embeddings: Tensor,
    data: TrainingData,
) -> tuple:
    """The frozen teacher ``teacher`` names, as a 0- or 1-tuple (``self``: none here).

    ``cam`` (a ``cam`` run on ``data``, the student's own, built on first use:
    :mod:`wsolbench.blocks.cam_teacher`; ``synthcam-v1`` is the same, on ``synthetic-v1`` only) and
    ``run:<work_dir>`` give a :class:`RunTeacher`; ``clip`` a :class:`ClipTeacher` on the text
    encoder ``loaded`` and the classes' [C, d] embeddings.
    """
    from wsolbench.blocks.cam_teacher import SYNTHCAM, SYNTHETIC_PROTOCOL, ensure_cam_teacher

    if teacher == SYNTHCAM and data.protocol_id != SYNTHETIC_PROTOCOL:
        raise ValueError(
            f"teacher {SYNTHCAM} is the cam teacher of {SYNTHETIC_PROTOCOL}, but this run is on "
            f"{data.protocol_id}: use teacher=cam (a cam run on this run's own data)"
        )
    if teacher in ("cam", SYNTHCAM):
        return (RunTeacher(ensure_cam_teacher(data), num_classes, image_norm),)
    if str(teacher).startswith(RUN_PREFIX):
        return (RunTeacher(str(teacher)[len(RUN_PREFIX) :], num_classes, image_norm),)
    if teacher == "clip":
        return (ClipTeacher(loaded, class_embeddings, image_norm),)
    return ()
