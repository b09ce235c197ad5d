"""Pictures of results: map overlays with boxes, and BoxAcc-vs-threshold curves.

``wsolbench visualize`` calls :func:`visualize`. Two figures:

- **Overlay grid** (``overlays.png``): ``n`` test images spread evenly over the split (so every
  class shows), each with the method's map for the ground-truth class (resized to the protocol size
  and min-max normalized exactly as the evaluator does; JET colormap, half transparent), the
  ground-truth boxes in green and, in red, the predicted box at the run's threshold for the
  IoU-50 curve under the chosen policy: of the boxes of every contour of the thresholded map (the
  MaxBoxAccV2 rule), the one that best overlaps a ground-truth box — the box the metric scores.
  Each tile's caption gives the class and that IoU. On a masks-only protocol (histology) the
  outlines are masks: the ground-truth mask's in green, in red the predicted mask's (map ≥ τ at
  the τ of mIoU, where Dice and mIoU are read), and the caption gives that image's mask IoU.
  The grid is drawn pixel by pixel (OpenCV), not by a plotting library, so a box lands on
  exactly the pixels of its coordinates (scaled by an integer factor for small protocol sizes).
- **Curves** (``curves.png``): BoxAcc (multi-contour rule, the curve behind MaxBoxAccV2) against the
  threshold τ, one panel per IoU threshold, one line per run, the maximum marked; recomputed from
  the per-threshold counts stored in ``result.json``, so it needs no model.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from wsolbench.leaderboard.sources import short_name
from wsolbench.results.record import RESULT_FILENAME, Result, ResultError, load_result
from wsolbench.results.verify import verify_results
from wsolbench.util.atomic import write_bytes_atomic
from wsolbench.util.weights_source import source_parts

if TYPE_CHECKING:
    from wsolbench.runs.rebuild import LoadedRun

logger = logging.getLogger(__name__)

GT_COLOR = (0, 255, 0)  # RGB
PRED_COLOR = (255, 0, 0)
CAPTION_HEIGHT = 14
PAD = 4
BACKGROUND = (255, 255, 255)
CURVE_IOU = 50  # the overlay's box is chosen on the IoU-50 curve's threshold


# ----------------------------------------------------------------------------------------------
# Drawing (numpy + OpenCV, RGB uint8)
# ----------------------------------------------------------------------------------------------


def tile_scale(size: tuple[int, int], target: int = 192) -> int:
    """Integer upscaling factor that brings a protocol size near ``target`` pixels (≥ 1)."""
    return max(1, round(target / max(size)))


def scale_box(box: Sequence[int], scale: int) -> tuple[int, int, int, int]:
    """An inclusive pixel box (x0, y0, x1, y1) in a map ``scale`` times larger: the same pixels."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return x0 * scale, y0 * scale, (x1 + 1) * scale - 1, (y1 + 1) * scale - 1


def draw_box(image: np.ndarray, box: Sequence[int], color: tuple[int, int, int]) -> None:
    """Draw the 1-pixel outline of an inclusive box (x0, y0, x1, y1) onto ``image`` in place."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, min(x0, width - 1)), max(0, min(x1, width - 1))
    y0, y1 = max(0, min(y0, height - 1)), max(0, min(y1, height - 1))
    image[y0, x0 : x1 + 1] = color
    image[y1, x0 : x1 + 1] = color
    image[y0 : y1 + 1, x0] = color
    image[y0 : y1 + 1, x1] = color


def overlay_map(image: np.ndarray, scoremap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [H, W] map in [0, 1] (JET colormap) over an RGB [H, W, 3] uint8 image."""
    levels = np.clip(scoremap * 255.0, 0, 255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def put_text(image: np.ndarray, text: str, origin: tuple[int, int], color=(0, 0, 0)) -> None:
    """Small text with its baseline at ``origin`` (x, y), in place."""
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)


def draw_outline(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    """Colour the pixels of ``mask`` ([H, W] bool, the image's size) that touch a pixel outside
    it (4-neighbourhood; the image border counts as outside), in place."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    image[mask & ~inner] = color


def make_tile(
    image: np.ndarray,
    scoremap: np.ndarray | None,
    gt_boxes: np.ndarray,
    pred_box: Sequence[int] | None,
    caption: str,
    scale: int = 1,
    outlines: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
) -> np.ndarray:
    """One grid cell: caption strip on top, then the (upscaled) image with map and boxes.

    Args:
        image: [H, W, 3] uint8 RGB at the protocol size.
        scoremap: [H, W] in [0, 1], or None for the image alone.
        gt_boxes: [G, 4] inclusive (x0, y0, x1, y1) at the protocol size, drawn green.
        pred_box: inclusive box at the protocol size drawn red (on top), or None.
        scale: integer upscaling factor (nearest neighbour; boxes cover the same pixels).
        outlines: ([H, W] bool mask at the protocol size, colour) pairs, outlined in order.

    Returns:
        [CAPTION_HEIGHT + H * scale, W * scale, 3] uint8.
    """
    shown = overlay_map(image, scoremap) if scoremap is not None else image.copy()
    if scale > 1:
        shown = np.repeat(np.repeat(shown, scale, axis=0), scale, axis=1)
    for mask, color in outlines:
        draw_outline(shown, np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1), color)
    for box in np.asarray(gt_boxes).reshape(-1, 4):
        draw_box(shown, scale_box(box, scale), GT_COLOR)
    if pred_box is not None:
        draw_box(shown, scale_box(pred_box, scale), PRED_COLOR)
    strip = np.full((CAPTION_HEIGHT, shown.shape[1], 3), BACKGROUND, dtype=np.uint8)
    put_text(strip, caption, (2, CAPTION_HEIGHT - 4))
    return np.concatenate([strip, shown], axis=0)


def tile_origin(index: int, ncols: int, tile_shape: tuple[int, int], top: int = 0) -> tuple:
    """(y, x) of the top-left pixel of tile ``index`` in :func:`make_grid`'s layout."""
    row, col = divmod(index, ncols)
    height, width = tile_shape
    return top + PAD + row * (height + PAD), PAD + col * (width + PAD)


def make_grid(tiles: list[np.ndarray], ncols: int, header: Sequence[str] = ()) -> np.ndarray:
    """Tiles of one shape in rows of ``ncols``, ``PAD`` pixels apart, under header text lines.

    Returns:
        [top + PAD + rows * (h + PAD), PAD + ncols * (w + PAD), 3] uint8, where
        ``top = 14 * len(header)``; tile ``i`` starts at :func:`tile_origin`.
    """
    if not tiles:
        raise ValueError("make_grid: no tiles")
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // ncols)
    top = 14 * len(header)
    grid = np.full(
        (top + PAD + rows * (height + PAD), PAD + ncols * (width + PAD), 3),
        BACKGROUND,
        dtype=np.uint8,
    )
    for i, line in enumerate(header):
        put_text(grid, line, (PAD, 14 * (i + 1) - 3))
    for i, tile in enumerate(tiles):
        if tile.shape[:2] != (height, width):
            raise ValueError(f"make_grid: tile {i} is {tile.shape[:2]}, not {(height, width)}")
        y, x = tile_origin(i, ncols, (height, width), top)
        grid[y : y + height, x : x + width] = tile
    return grid


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write an RGB uint8 image as PNG, atomically (folders created)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Curves (matplotlib, from stored counts)
# ----------------------------------------------------------------------------------------------


def curve_panels(counts: dict) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """(thresholds [T], {panel title: curve in percent [T]}, y label) of a split's counts: BoxAcc
    per IoU threshold (multi-contour rule), or on a masks-only protocol mIoU, Dice FG and Dice BG
    (pooled over the split's pixels, as the metrics are)."""
    from wsolbench.metrics import threshold_grid
    from wsolbench.metrics.overlap import overlap_curves

    thresholds = threshold_grid(counts["step"])
    box, mask = counts.get("box"), counts.get("mask")
    if box:
        n = int(counts["n_images"])
        curves = {
            f"IoU ≥ {int(iou) / 100:.2f}": np.asarray(box["multi"][str(iou)], np.float64) * 100 / n
            for iou in counts["iou_thresholds"]
        }
        return thresholds, curves, "BoxAcc (%)"
    if mask:
        curves = overlap_curves(mask["fg_hist"], mask["bg_hist"])
        names = {"miou": "mIoU", "dice_fg": "Dice FG", "dice_bg": "Dice BG"}
        return thresholds, {names[k]: curves[k] for k in names}, "percent"
    raise ResultError("these counts hold neither box nor mask statistics: no curve to draw")


def short_sources(pretrained: str) -> str:
    """A ``pretrained`` text by its parts' short names (``backbone none; text synthclip-v1``),
    as tables show it: the record has it in full, by content."""
    return "; ".join(
        f"{part} {short_name(source)}" if part else short_name(source)
        for part, source in source_parts(pretrained)
    )


def run_label(result: Result) -> str:
    """``cam seed 0`` (``‡`` marks a run without pretrained weights, as in the tables)."""
    from wsolbench.leaderboard import NO_WEIGHTS_MARK

    mark = "" if result.has_pretrained else NO_WEIGHTS_MARK
    return f"{result.method}{mark} seed {result.seed}"


def plot_curves(
    runs: Sequence[tuple[str, dict]], output: Path, title: str = "", split: str = "test"
) -> Path:
    """Curves against τ (:func:`curve_panels`: BoxAcc per IoU threshold, or the mask metrics),
    one panel each, one line per run; written as PNG.

    Args:
        runs: (label, counts record of one split) per run.
        output: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("plot_curves: no run")
    panels = {label: curve_panels(counts) for label, counts in runs}
    titles = list(dict.fromkeys(t for _, curves, _ in panels.values() for t in curves))
    ylabel = next(iter(panels.values()))[2]
    fig, axes = plt.subplots(1, len(titles), figsize=(4.2 * len(titles), 3.6), squeeze=False)
    colors = plt.get_cmap("tab10")
    for k, (label, (thresholds, curves, _)) in enumerate(panels.items()):
        for ax, panel in zip(axes[0], titles, strict=True):
            if panel not in curves:
                continue
            acc = curves[panel]
            best = int(np.argmax(acc))
            color = colors(k % 10)
            ax.plot(thresholds, acc, color=color, lw=1.4, label=f"{label}: {acc[best]:.1f}")
            ax.plot([thresholds[best]], [acc[best]], "o", color=color, ms=4)
    for ax, panel in zip(axes[0], titles, strict=True):
        ax.set_title(panel)
        ax.set_xlabel("threshold τ")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="maximum", title_fontsize=7)
    axes[0][0].set_ylabel(f"{ylabel}, {split} split")
    fig.suptitle(title or f"{ylabel} vs threshold (● = maximum)", fontsize=10)
    fig.tight_layout()
    # Fixed metadata: the same curves give the same bytes (no timestamp, no version string).
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(output, buffer.getvalue())
    return Path(output)


# ----------------------------------------------------------------------------------------------
# Runs → figures
# ----------------------------------------------------------------------------------------------


def load_run(work_dir: str | Path) -> LoadedRun:
    """A finished run rebuilt from its work dir (:func:`wsolbench.runs.rebuild.load_run`).

    Raises:
        ResultError: the run is not finished (no ``result.json``). See ``rebuild.load_run``.
    """
    from wsolbench.runs.rebuild import load_run as rebuild_run

    run = rebuild_run(work_dir, weights="exported")
    if run.result is None:
        raise ResultError(f"{work_dir}: no {RESULT_FILENAME}; is the run finished?")
    return run


def spread_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (all of them when ``n >= total``)."""
    if n >= total:
        return list(range(total))
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, n)})


def policy_threshold(
    result: Result, policy: str, split: str, key: str = f"maxboxacc_iou{CURVE_IOU}"
) -> float:
    """The τ that ``policy`` picks for the metric ``key`` of ``split`` (from stored counts): the
    IoU-50 BoxAcc by default, ``miou`` on a masks-only protocol."""
    from wsolbench.metrics import parse_policy, summarize

    policy = parse_policy(policy)
    counts = result.counts.get(split)
    if not counts:
        raise ResultError(f"the result has no {split!r} counts (it has {', '.join(result.counts)})")
    _, chosen = summarize(
        counts, policy, val_counts=result.counts.get("val") if policy == "select" else None
    )
    if key not in chosen:
        raise ResultError(f"the {split} counts have no {key} curve")
    return float(chosen[key])


def overlay_grid(
    run: LoadedRun,
    *,
    n: int = 16,
    policy: str = "oracle",
    split: str = "test",
    data_root: str | Path | None = None,
    device: str = "cpu",
    ncols: int | None = None,
) -> np.ndarray:
    """The overlay grid of a loaded run (see the module docstring) as an RGB uint8 array."""
    import torch

    from wsolbench import metrics
    from wsolbench.counting import EvalSettings, GroundTruth
    from wsolbench.data.dataset import WSOLImageDataset
    from wsolbench.data.fingerprint import short, split_fingerprint
    from wsolbench.data.metadata import read_split
    from wsolbench.data.sources import get_dataset
    from wsolbench.evaluate import predict_batch

    result, method, protocol = run.result, run.method, run.protocol
    boxes = protocol.has_boxes
    tau = policy_threshold(result, policy, split, f"maxboxacc_iou{CURVE_IOU}" if boxes else "miou")
    root = get_dataset(result.dataset)().resolve(data_root, protocol)
    meta = read_split(root / "metadata" / protocol.splits[split], num_classes=protocol.num_classes)
    recorded = ((result.data_fingerprint or {}).get("splits") or {}).get(split, {}).get("sha256")
    if recorded is not None and recorded != split_fingerprint(meta):
        raise ResultError(
            f"the {split} split under {root} (fingerprint {short(split_fingerprint(meta))}) is not "
            f"the data {run.work_dir} was evaluated on ({short(recorded)}); pass that run's "
            "--data-root"
        )
    if boxes and meta.boxes is None:
        raise ResultError(f"{split} split of {protocol.id} has no boxes to draw")
    size = tuple(protocol.eval_size)
    truth = (
        None if boxes else GroundTruth(meta, EvalSettings.from_protocol(protocol), root / "masks")
    )
    dataset = WSOLImageDataset(meta, root / "images", size, method.image_mean, method.image_std)
    indices = spread_indices(len(dataset), n)
    items = [dataset[i] for i in indices]
    images = torch.stack([item["image"] for item in items]).to(device)
    labels = torch.tensor([item["label"] for item in items], dtype=torch.long, device=device)
    method.eval()
    method.to(device)
    with torch.no_grad():
        maps, topk = predict_batch(method, images, labels)
    mean = torch.tensor(method.image_mean).view(3, 1, 1)
    std = torch.tensor(method.image_std).view(3, 1, 1)
    names = protocol.classnames or ()
    scale = tile_scale(size)
    tiles = []
    hits = 0
    for row, (index, item) in enumerate(zip(indices, items, strict=True)):
        image_id = meta.image_ids[index]
        rgb = ((item["image"] * std + mean).clamp(0, 1) * 255 + 0.5).byte()
        rgb = rgb.permute(1, 2, 0).numpy()
        scoremap = metrics.normalize_map(maps[row], size, resize=protocol.map_resize)
        label = int(item["label"])
        name = names[label] if label < len(names) else f"class {label}"
        if boxes:
            gt = metrics.rescale_boxes(meta.boxes[image_id], meta.sizes[image_id], size[::-1])
            multi, _ = metrics.boxes_from_map(scoremap, np.array([tau]))
            candidates = multi[0]
            ious = metrics.box_iou(candidates, gt).max(axis=1)
            best = int(np.argmax(ious))
            iou, drawn = float(ious[best]), {"gt_boxes": gt, "pred_box": candidates[best]}
        else:
            foreground, _ = truth.masks(image_id)
            predicted = scoremap >= tau
            union = int((foreground | predicted).sum())
            iou = int((foreground & predicted).sum()) / union if union else 1.0
            outlines = [(foreground, GT_COLOR), (predicted, PRED_COLOR)]
            drawn = {"gt_boxes": np.zeros((0, 4)), "pred_box": None, "outlines": outlines}
        hits += iou >= CURVE_IOU / 100
        caption = f"{name[:18]} IoU {iou:.2f}"
        if topk is not None:
            caption += " cls ok" if topk[row][0] == label else " cls x"
        tiles.append(make_tile(rgb, scoremap, caption=caption, scale=scale, **drawn))
    drawn_text = (
        f"green: GT box; red: best-matching contour box at tau={tau:.3f} ({policy} policy, "
        f"IoU-{CURVE_IOU} curve)"
        if boxes
        else f"green: GT mask outline; red: map >= tau={tau:.3f} ({policy} policy, mIoU's tau)"
    )
    header = [
        # OpenCV's font is ASCII only: the no-weights mark is spelled out.
        f"{result.method} seed {result.seed} | {result.protocol} {split} split | {len(tiles)} "
        f"images | pretrained: {short_sources(result.pretrained)}"
        + ("" if result.has_pretrained else " (NO PRETRAINED WEIGHTS)"),
        f"map of the GT class (JET); {drawn_text}; {hits}/{len(tiles)} at IoU>=0.5",
    ]
    ncols = ncols or int(np.ceil(np.sqrt(len(tiles))))
    return make_grid(tiles, ncols, header)


def visualize(
    paths: Sequence[str | Path],
    *,
    n: int = 16,
    output: str | Path | None = None,
    policy: str = "oracle",
    split: str = "test",
    data_root: str | Path | None = None,
    device: str = "cpu",
    overlays: bool = True,
    curves: bool = True,
) -> list[Path]:
    """``wsolbench visualize``: overlay grids and curves of runs; returns the files written.

    Args:
        paths: run work dirs (overlays and curves) or ``result.json`` files (curves only: a lone
            result file has no model to draw maps with).
        output: folder for every file (``<method>-seed<N>-overlays.png``, ``curves.png``); without
            it a single run's figures go to its work dir (``overlays.png``, ``curves.png``).
        policy: threshold policy for the overlay's predicted box.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("visualize: pass at least one run dir or result.json")
    if output is None and len(paths) > 1:
        raise ValueError("visualize: several runs need --output DIR for their shared figures")
    written: list[Path] = []
    loaded: list[tuple[Path, Result]] = []
    for path in paths:
        if path.is_file():
            loaded.append((path, load_result(path)))
        elif (path / RESULT_FILENAME).is_file():
            loaded.append((path, load_result(path / RESULT_FILENAME)))
        else:
            raise ResultError(f"{path}: no {RESULT_FILENAME}; pass a finished run's work dir")
    # each result with its own files (load_run checks the weights the overlays load)
    verify_results([(p if p.is_file() else p / RESULT_FILENAME, r) for p, r in loaded])
    protocols = sorted({result.protocol for _, result in loaded})
    if curves and len(protocols) > 1:
        raise ResultError(
            f"visualize: runs of different protocols ({', '.join(protocols)}) share no curves; "
            "pass runs of one protocol"
        )
    out_dir = Path(output) if output is not None else None
    first = paths[0].parent if paths[0].is_file() else paths[0]
    if overlays:
        for path, result in loaded:
            if path.is_file():
                logger.warning("%s is a result file, not a work dir: curves only", path)
                continue
            run = load_run(path)
            grid = overlay_grid(
                run, n=n, policy=policy, split=split, data_root=data_root, device=device
            )
            name = f"{result.method}-seed{result.seed}-overlays.png" if out_dir else "overlays.png"
            written.append(save_png(grid, (out_dir or path) / name))
    if curves:
        runs = [(run_label(result), result.counts[split]) for _, result in loaded]
        protocol = loaded[0][1].protocol
        boxes = "box" in loaded[0][1].counts[split]
        what = "BoxAcc (multi-contour rule)" if boxes else "mIoU and Dice"
        title = f"{protocol}, {split} split: {what} vs threshold (● = maximum)"
        written.append(plot_curves(runs, (out_dir or first) / "curves.png", title, split))
    return written
