"""Figures (wsolbench/runs/visualize.py): boxes land on their pixels, PNG sizes, the CLI end to
end."""

import numpy as np
import pytest
from PIL import Image

from wsolbench import metrics
from wsolbench.cli.main import main
from wsolbench.data.metadata import read_split
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.results.record import load_result
from wsolbench.runs.visualize import (
    CAPTION_HEIGHT,
    GT_COLOR,
    PAD,
    PRED_COLOR,
    make_grid,
    make_tile,
    policy_threshold,
    scale_box,
    spread_indices,
    tile_origin,
    tile_scale,
)


def box_outline(box):
    """The pixels (y, x) of an inclusive box's 1-pixel outline."""
    x0, y0, x1, y1 = box
    pixels = {(y, x) for x in range(x0, x1 + 1) for y in (y0, y1)}
    return pixels | {(y, x) for y in range(y0, y1 + 1) for x in (x0, x1)}


def colored(image, color):
    return {tuple(p) for p in np.argwhere(np.all(image == np.array(color), axis=-1))}


@pytest.mark.parametrize("scale", [1, 3])
def test_tile_boxes_are_drawn_exactly_on_their_pixels(scale):
    image = np.full((20, 30, 3), 128, dtype=np.uint8)
    gt, pred = (2, 3, 10, 12), (15, 1, 28, 18)
    tile = make_tile(image, None, np.array([gt]), pred, "x", scale)
    assert tile.shape == (CAPTION_HEIGHT + 20 * scale, 30 * scale, 3)
    body = tile[CAPTION_HEIGHT:]
    assert colored(body, GT_COLOR) == box_outline(scale_box(gt, scale))
    assert colored(body, PRED_COLOR) == box_outline(scale_box(pred, scale))
    # a scaled box covers the same pixels: box (2..10) at scale 3 spans 6..32
    assert scale_box(gt, 3) == (6, 9, 32, 38)


def test_grid_places_tiles_where_tile_origin_says():
    tiles = [np.full((5, 7, 3), i, dtype=np.uint8) for i in range(5)]
    grid = make_grid(tiles, ncols=3, header=["title"])
    top = 14
    assert grid.shape == (top + PAD + 2 * (5 + PAD), PAD + 3 * (7 + PAD), 3)
    for i in range(5):
        y, x = tile_origin(i, 3, (5, 7), top)
        assert (grid[y : y + 5, x : x + 7] == i).all()


def test_spread_indices_cover_the_split_evenly():
    assert spread_indices(100, 5) == [0, 25, 50, 74, 99]
    assert spread_indices(3, 16) == [0, 1, 2]


TINY = SyntheticConfig(
    num_classes=3, image_size=96, train_per_class=2, val_per_class=3, test_per_class=4
)


@pytest.fixture(scope="module")
def center_run(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("synthetic") / "tiny", TINY)
    work = tmp_path_factory.mktemp("runs") / "center"
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", str(root)]
    argv += ["--protocol", str(root / "protocol.yaml")]
    assert main([*argv, "--work-dir", str(work)]) == 0
    return root, work


def test_visualize_writes_an_overlay_grid_with_boxes_where_they_are(center_run, capsys):
    root, work = center_run
    assert main(["visualize", str(work), "--n", "4", "--data-root", str(root)]) == 0
    assert "overlays.png" in capsys.readouterr().out
    grid = np.asarray(Image.open(work / "overlays.png").convert("RGB"))
    size = (96, 96)  # the tiny protocol's evaluation size (its images' size)
    scale = tile_scale(size)
    tile = (CAPTION_HEIGHT + 96 * scale, 96 * scale)
    top = 14 * 2  # two header lines
    assert grid.shape == (top + PAD + 2 * (tile[0] + PAD), PAD + 2 * (tile[1] + PAD), 3)

    # The first tile is the split's first image: its GT box outline is green (or red where the
    # predicted box is drawn over it), and the predicted box is the one the IoU-50 threshold gives.
    meta = read_split(root / "metadata" / "test")
    image_id = meta.image_ids[spread_indices(len(meta.image_ids), 4)[0]]
    gt = metrics.rescale_boxes(meta.boxes[image_id], meta.sizes[image_id], size)[0]
    y, x = tile_origin(0, 2, tile, top)
    body = grid[y + CAPTION_HEIGHT : y + tile[0], x : x + tile[1]]
    outline = box_outline(scale_box(gt, scale))
    green, red = colored(body, GT_COLOR), colored(body, PRED_COLOR)
    assert outline <= green | red and len(outline & green) > len(outline) // 2

    result = load_result(work / "result.json")
    tau = policy_threshold(result, "oracle", "test")
    yy, xx = np.mgrid[0:96, 0:96]
    gaussian = np.exp(-((yy - 47.5) ** 2 + (xx - 47.5) ** 2) / (2 * (0.25 * 96) ** 2))
    scoremap = metrics.normalize_map(gaussian.astype(np.float32), size)
    (pred,) = metrics.boxes_from_map(scoremap, np.array([tau]))[0][0]
    assert box_outline(scale_box(pred, scale)) <= red


def test_visualize_curves_of_several_runs(center_run, tmp_path, capsys):
    _, work = center_run
    out = tmp_path / "figs"
    argv = ["visualize", str(work), str(work / "result.json"), "--curves-only", "--output", out]
    assert main([str(a) for a in argv]) == 0
    with Image.open(out / "curves.png") as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 2 * height > 0  # three IoU panels side by side
    capsys.readouterr()
    assert main(["visualize", str(work), str(work), "--curves-only"]) == 2
    assert "need --output" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--device", "gpu"], "--device 'gpu': use auto, cpu or cuda[:N]"),
        (["--device", "CPU"], "--device 'CPU': use auto, cpu or cuda[:N]"),
        (["--no-curves", "RESULT"], "gives curves only"),
    ],
)
def test_visualize_refuses_what_it_cannot_draw_in_one_line(
    center_run, tmp_path, capsys, extra, named
):
    """A device it cannot use was a traceback; result.json files with --no-curves drew
    nothing and exited 0."""
    root, work = center_run
    paths = [str(work / "result.json")] if "RESULT" in extra else [str(work)]
    extra = [e for e in extra if e != "RESULT"]
    argv = ["visualize", *paths, *extra, "--data-root", str(root)]
    assert main([*argv, "--output", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and named in err
    assert not (tmp_path / "figs").exists() or not any((tmp_path / "figs").iterdir())
