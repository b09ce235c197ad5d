"""Look inside a TeD-Loc run: pseudo-label quality against the ground truth, and the maps.

    python -m methods.tedloc.diagnose RUN_DIR [--split val] [--n 12] [--every K] [--output DIR]

For each image of the split (the selection split by default, which has boxes), the run's teacher
(``self``: the EMA CAM head of the last training checkpoint; ``run:`` / ``clip``: the external
teacher) gives pseudo-labels on the patch grid exactly as in training, and they are scored
against the ground truth at the cell centres:

- ``fg_precision_box``: pseudo-foreground cells inside the GT box (the first thing to look at
  when the method underperforms: it is what the FG/BG head learns from);
- ``fg_precision_mask``: the same against the object's pixel mask, when the split has masks;
- ``fg_recall_box``: in-box cells that are pseudo-foreground;
- ``bg_precision_box``: pseudo-background cells outside the box;
- ``fg_cells`` / ``bg_cells``: per image, mean.

Writes ``<output>/pseudo_labels.json`` and ``<output>/maps.png`` (rows: image with GT box,
teacher map, pseudo-labels (white fg, grey ignored, black bg), FG probability map). Output
defaults to ``RUN_DIR/diagnose``. Needs the run's ``train/`` checkpoints (the EMA teacher is not in
``weights.pt``).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from wsolbench.counting import EvalSettings, GroundTruth
from wsolbench.data.dataset import WSOLImageDataset
from wsolbench.data.sources import get_dataset
from wsolbench.method import TrainingData
from wsolbench.runs.rebuild import load_run
from wsolbench.util.atomic import write_bytes_atomic, write_json_atomic


def _load_run(run_dir: Path):
    """The run's method with its newest training checkpoint (teacher state included) and its
    external teacher, refused when that is not the teacher the run learnt from; and the data
    root (the dataset's default one)."""
    loaded = load_run(run_dir, weights="checkpoint", keep=("teacher",))
    method, protocol, record = loaded.method, loaded.protocol, loaded.record
    root = get_dataset(record["dataset"])().resolve(None, protocol)
    data = TrainingData(
        dataset=record["dataset"],
        protocol=protocol.id,
        protocol_id=protocol.id,
        protocol_hash=protocol.hash,
        data_root=root,
        data_fingerprint=record["data_fingerprint"],
        device="cpu",
    )
    method.prepare_training(data)  # a cam teacher is built if it is not cached
    recorded = loaded.result.provenance.get("teacher") if loaded.result else None
    if recorded and method.provenance.get("teacher") != recorded:
        raise ValueError(
            f"{run_dir} learnt from teacher {recorded}, but its config now gives "
            f"{method.provenance.get('teacher')}: the pseudo-labels would not be the run's"
        )
    return method, protocol, record, root


def _cell_centres_inside(box: np.ndarray, grid: tuple[int, int], size: tuple[int, int]):
    """[h·w] bool: cell centres inside the pixel-inclusive box (x0, y0, x1, y1) at ``size``."""
    gh, gw = grid
    height, width = size
    ys = (np.arange(gh) + 0.5) * height / gh
    xs = (np.arange(gw) + 0.5) * width / gw
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    x0, y0, x1, y1 = box
    return ((xx >= x0) & (xx <= x1 + 1) & (yy >= y0) & (yy <= y1 + 1)).reshape(-1)


def _to_image(values: np.ndarray, size: tuple[int, int]) -> Image.Image:
    values = (values - values.min()) / max(float(values.max() - values.min()), 1e-12)
    heat = Image.fromarray((values * 255).astype(np.uint8)).resize(size[::-1], Image.NEAREST)
    return heat.convert("RGB")


@torch.no_grad()
def diagnose(
    run_dir: Path, split: str = "val", n: int = 12, output: Path | None = None, every: int = 1
) -> dict:
    """Score the run's pseudo-labels on ``split`` and draw ``n`` images (every ``every``-th)."""
    method, protocol, record, root = _load_run(run_dir)
    from wsolbench.data.metadata import read_split

    meta = read_split(root / "metadata" / protocol.splits[split], num_classes=protocol.num_classes)
    settings = EvalSettings.from_protocol(protocol)
    truth = GroundTruth(meta, settings, root / "masks" if protocol.has_masks else None)
    size = tuple(protocol.eval_size)
    data = WSOLImageDataset(meta, root / "images", size, method.image_mean, method.image_std)
    sums = {"fg_in_box": 0, "fg_in_mask": 0, "fg": 0, "bg": 0, "bg_out_box": 0, "box": 0,
            "box_fg": 0, "images": 0}  # fmt: skip
    tiles = []
    for start in range(0, len(data), 64):
        items = [data[i] for i in range(start, min(start + 64, len(data)))]
        images = torch.stack([it["image"] for it in items])
        labels = torch.tensor([it["label"] for it in items])
        features = method.backbone(images)
        grid = tuple(features.shape[-2:])
        teacher = method.teacher_maps(images, labels, features)
        pseudo = method.pseudo_labels(images, labels, features).numpy()
        fg_map = method.predict(images, labels).maps.numpy()
        for row, item in enumerate(items):
            image_id = meta.image_ids[item["index"]]
            box = truth.boxes(image_id)[0]
            inside = _cell_centres_inside(box, grid, size)
            fg, bg = pseudo[row] == 1, pseudo[row] == 0
            sums["fg"] += int(fg.sum())
            sums["bg"] += int(bg.sum())
            sums["fg_in_box"] += int((fg & inside).sum())
            sums["bg_out_box"] += int((bg & ~inside).sum())
            sums["box"] += int(inside.sum())
            sums["box_fg"] += int((fg & inside).sum())
            sums["images"] += 1
            if truth.settings.masks:
                mask, _ = truth.masks(image_id)
                gh, gw = grid
                ys = ((np.arange(gh) + 0.5) * size[0] / gh).astype(int)
                xs = ((np.arange(gw) + 0.5) * size[1] / gw).astype(int)
                in_mask = mask[np.ix_(ys, xs)].reshape(-1)
                sums["fg_in_mask"] += int((fg & in_mask).sum())
            if len(tiles) < n and item["index"] % every == 0:
                picture = Image.open(root / "images" / image_id).convert("RGB").resize(size[::-1])
                ImageDraw.Draw(picture).rectangle([int(v) for v in box], outline=(0, 255, 0))
                labels_img = np.where(pseudo[row] == 1, 1.0, np.where(pseudo[row] == 0, 0.0, 0.5))
                column = [
                    picture,
                    _to_image(teacher[row].numpy(), size),
                    _to_image(labels_img.reshape(grid), size),
                    _to_image(fg_map[row], size),
                ]
                tiles.append(column)
    report = {
        "run": str(run_dir),
        "split": split,
        "teacher": record["config"].get("teacher"),
        "teacher_source": method.provenance.get("teacher", "self"),
        "fg_precision_box": 100 * sums["fg_in_box"] / max(sums["fg"], 1),
        "fg_recall_box": 100 * sums["box_fg"] / max(sums["box"], 1),
        "bg_precision_box": 100 * sums["bg_out_box"] / max(sums["bg"], 1),
        "fg_cells": sums["fg"] / max(sums["images"], 1),
        "bg_cells": sums["bg"] / max(sums["images"], 1),
        "box_cells": sums["box"] / max(sums["images"], 1),
    }
    if truth.settings.masks:
        report["fg_precision_mask"] = 100 * sums["fg_in_mask"] / max(sums["fg"], 1)
    output = Path(output or run_dir / "diagnose")
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output / "pseudo_labels.json", report)
    if tiles:
        height, width = size
        sheet = Image.new("RGB", (len(tiles) * (width + 2), 4 * (height + 2)), (40, 40, 40))
        for col, column in enumerate(tiles):
            for row, tile in enumerate(column):
                sheet.paste(tile, (col * (width + 2), row * (height + 2)))
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        write_bytes_atomic(output / "maps.png", buffer.getvalue())
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--every", type=int, default=1, help="draw every k-th image")
    args = parser.parse_args(argv)
    report = diagnose(args.run_dir, args.split, args.n, args.output, args.every)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
