"""Bad input is one ``error:`` line, never a number: non-finite maps and logits, files that are not
masks, maps that are not maps, metadata with a BOM, images whose size contradicts the metadata."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from toy_method import ToyCAM

from wsolbench.cli.main import USER_ERRORS, main
from wsolbench.counting import EvalSettings, GroundTruth
from wsolbench.data.dataset import ImageSizeError, WSOLImageDataset
from wsolbench.data.metadata import MetadataError, read_split
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.evaluate import evaluate_method, predict_batch
from wsolbench.method import Prediction
from wsolbench.metrics.maps import NonFiniteError
from wsolbench.metrics.pxap import MaskError, read_mask
from wsolbench.train.weights import export_weights

TINY = SyntheticConfig(
    num_classes=3, image_size=48, train_per_class=2, val_per_class=3, test_per_class=4
)
SIZE = 48  # the images' own size, the tiny protocol's eval_size
SETTINGS = EvalSettings((SIZE, SIZE), 0.001, (30, 50, 70), boxes=True, masks=True)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", TINY)


@pytest.fixture
def own_root(tiny_root, tmp_path):
    """A copy of the tiny root a test may damage."""
    return shutil.copytree(tiny_root, tmp_path / "root")


def test_every_error_class_here_is_a_user_error():
    for cls in (NonFiniteError, MaskError, ImageSizeError, MetadataError):
        assert issubclass(cls, USER_ERRORS)


def one_error_line(err: str) -> str:
    """The last line of stderr, the only ``error:`` line; no traceback."""
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(x.startswith("error") for x in lines) == 1, err
    assert "Traceback" not in err
    return lines[-1]


# --- 1. non-finite maps and logits ------------------------------------------------------------


class Corrupt(ToyCAM):
    """ToyCAM whose map (or class scores) of the ``bad``-th image it predicts is NaN (or inf)."""

    def __init__(self, bad: int, what: str):
        super().__init__(TINY.num_classes)
        self.bad, self.what, self.seen = bad, what, 0

    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        maps, logits = prediction.maps.clone(), prediction.logits.clone()
        row = self.bad - self.seen
        if 0 <= row < len(images):
            if self.what == "map":
                maps[row, 1, 2] = float("nan")
            else:
                logits[row, 0] = float("inf")
        self.seen += len(images)
        return Prediction(logits, maps)


@pytest.mark.parametrize(("what", "bad"), [("map", 5), ("logits", 2)])
def test_a_non_finite_prediction_stops_evaluation_naming_the_image(tiny_root, what, bad):
    meta = read_split(tiny_root / "metadata" / "test")
    with pytest.raises(NonFiniteError) as info:
        evaluate_method(
            Corrupt(bad, what),
            meta,
            tiny_root / "images",
            SETTINGS,
            mask_root=tiny_root / "masks",
            batch_size=4,
            progress=False,
        )
    message = str(info.value)
    assert f"'{meta.image_ids[bad]}'" in message and str(meta.split_dir) in message
    assert what in message and "NaN or inf" in message and "diverged" in message
    assert "\n" not in message


class Huge(ToyCAM):
    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        return Prediction(prediction.logits, torch.full_like(prediction.maps, 3e38))


def test_finite_outputs_whose_sum_overflows_are_scored_and_names_default_to_the_row():
    images, labels = torch.rand(4, 3, SIZE, SIZE), torch.tensor([0, 1, 2, 0])
    maps, _ = predict_batch(Huge(TINY.num_classes).eval(), images, labels)  # the sum is inf
    assert np.isfinite(maps).all() and maps.max() == np.float32(3e38)
    with pytest.raises(NonFiniteError, match="image 1 of the batch: NaN or inf in the model's map"):
        predict_batch(Corrupt(1, "map").eval(), images, labels)


def test_eval_of_nan_weights_is_an_error_not_zero_localization(tiny_root, tmp_path, capsys):
    method = ToyCAM(TINY.num_classes)
    with torch.no_grad():
        for parameter in method.parameters():
            parameter.mul_(float("nan"))
    export_weights(method, tmp_path / "weights.pt")
    argv = ["eval", "--method", "toy_method:ToyCAM", "--weights", tmp_path / "weights.pt"]
    argv += ["--dataset", "synthetic", "--data-root", tiny_root]
    argv += ["--protocol", tiny_root / "protocol.yaml", "--work-dir", tmp_path / "eval"]
    assert main([str(a) for a in argv]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "NaN or inf" in line and "diverged" in line and "metadata" in line
    assert not (tmp_path / "eval" / "result.json").exists()


def _eval_weights(root, weights, work) -> list[str]:
    argv = ["eval", "--method", "toy_method:ToyCAM", "--weights", weights]
    argv += ["--dataset", "synthetic", "--data-root", root]
    return [str(a) for a in [*argv, "--protocol", root / "protocol.yaml", "--work-dir", work]]


def test_a_training_checkpoint_as_weights_names_weights_pt(tiny_root, tmp_path, capsys):
    from mmengine.logging import HistoryBuffer

    from wsolbench.blocks.backbone_weights import read_state_dict

    # what mmengine writes to RUN/train/epoch_N.pth: the state dict beside the message hub's
    # Python objects, which torch.load(weights_only=True) refuses
    epoch = tmp_path / "train" / "epoch_1.pth"
    epoch.parent.mkdir()
    state = {f"method.{k}": v for k, v in ToyCAM(TINY.num_classes).state_dict().items()}
    torch.save({"state_dict": state, "message_hub": {"loss": HistoryBuffer()}}, epoch)
    assert main(_eval_weights(tiny_root, epoch, tmp_path / "eval")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(epoch) in line and "training checkpoint" in line and "weights.pt" in line
    assert "\x1b" not in line
    with pytest.raises(ValueError, match="training checkpoint") as caught:
        read_state_dict(epoch)
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)


def test_an_unloadable_weights_file_is_one_plain_line(tiny_root, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02garbage")
    assert main(_eval_weights(tiny_root, garbage, tmp_path / "eval")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(garbage) in line and "\x1b" not in line and "weights.pt" in line


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"method: cam\nseed: 0\n", "a text file beginning 'method: cam'"),  # was KeyError: 101
        (b"", "an empty file"),
    ],
)
def test_a_weights_file_that_is_no_torch_file_says_so(tiny_root, tmp_path, capsys, content, said):
    from wsolbench.blocks.backbone_weights import read_state_dict
    from wsolbench.blocks.clip_weights import read_weights

    weights = tmp_path / "weights.pt"
    weights.write_bytes(content)
    assert main(_eval_weights(tiny_root, weights, tmp_path / "eval")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(weights) in line and said in line and "not a PyTorch weights file" in line
    assert "weights.pt of a finished run" in line  # what to pass instead
    # every reader of weights files says the same
    for read in (read_state_dict, read_weights):
        with pytest.raises(ValueError, match=said) as caught:
            read(weights)
        assert str(weights) in str(caught.value)
    from wsolbench.train.weights import load_weights_file

    with pytest.raises(ValueError, match=said) as caught:
        load_weights_file(ToyCAM(TINY.num_classes), weights)
    assert "RUN/weights.pt" in str(caught.value)


def test_a_runs_config_yaml_as_its_weights_is_called_a_text_file(tiny_root, tmp_path, capsys):
    # the mix-up the run-folder check would call "not the weights its result records"
    run = tmp_path / "run"
    argv = ["run", "--method", "toy_method:ToyCAM", "--dataset", "synthetic", "--data-root"]
    argv += [tiny_root, "--protocol", tiny_root / "protocol.yaml", "--work-dir", run]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    assert main(_eval_weights(tiny_root, run / "config.yaml", tmp_path / "eval")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "config.yaml is a text file beginning" in line and "not a PyTorch weights" in line


@pytest.mark.parametrize(
    ("method", "override"), [("cam", "backbone.checkpoint="), ("tedloc", "teacher=run:")]
)
def test_an_empty_path_override_is_one_line_naming_the_key(tiny_root, tmp_path, capsys, method,
                                                           override):  # fmt: skip
    # -o backbone.checkpoint=$W with W unset: not the cached weights, not the current folder
    argv = ["run", "--method", method, "--dataset", "synthetic", "--data-root", tiny_root]
    argv += ["--protocol", tiny_root / "protocol.yaml", "--work-dir", tmp_path / "run"]
    assert main([str(a) for a in [*argv, "-o", override]]) == 2
    line = one_error_line(capsys.readouterr().err)
    key = override.partition("=")[0]
    assert f"-o {override}: {key} is" in line and "an empty path" in line
    assert not (tmp_path / "run").exists()


def save_maps(root, maps_dir, make_map) -> list[str]:
    ids = read_split(root / "metadata" / "test").image_ids
    for image_id in ids:
        path = maps_dir / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = cv2.imread(str(root / "masks" / image_id), cv2.IMREAD_GRAYSCALE) > 0
        np.save(path, make_map(mask))
    return ids


def evaluate_maps(root, maps_dir, *extra) -> int:
    argv = ["evaluate-maps", "--maps", maps_dir, "--metadata", root / "metadata" / "test"]
    argv += ["--size", SIZE, SIZE, "--workers", 1, *extra]
    return main([str(a) for a in argv])


def _with_nan(mask: np.ndarray, side: int = SIZE) -> np.ndarray:
    scoremap = cv2.resize(mask.astype(np.float32), (side, side))
    scoremap[5, 3] = np.nan
    return scoremap


@pytest.mark.parametrize(
    ("make_map", "flags"),
    [
        (_with_nan, []),  # protocol size, used as given
        (_with_nan, ["--normalize"]),  # the reference's normalization would make it all zeros
        (lambda mask: _with_nan(mask, 16), []),  # resized (the NaN may vanish), then normalized
        (lambda mask: np.where(mask, np.inf, 0.0)[::2, ::3], []),  # bicubic makes inf a NaN
    ],
)
def test_a_saved_map_with_nan_or_inf_is_an_error_naming_the_file(
    tiny_root, tmp_path, capsys, make_map, flags
):
    ids = save_maps(tiny_root, tmp_path / "maps", make_map)
    assert evaluate_maps(tiny_root, tmp_path / "maps", *flags) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{ids[0]}.npy" in line and "NaN or inf" in line
    assert "--normalize" not in line  # normalizing never makes a NaN a number


# --- 2. any image accepted as a mask ----------------------------------------------------------


def test_evaluate_maps_refuses_photos_as_masks(tiny_root, tmp_path, capsys):
    ids = save_maps(tiny_root, tmp_path / "maps", lambda mask: mask.astype(np.float32))
    assert evaluate_maps(tiny_root, tmp_path / "maps", "--masks", tiny_root / "images") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(tiny_root / "images" / ids[0]) in line
    assert "colour" in line and "0/255 or 0/1" in line


def test_a_data_root_whose_masks_are_photos_is_refused(own_root, tmp_path, capsys):
    shutil.rmtree(own_root / "masks")
    shutil.copytree(own_root / "images", own_root / "masks")
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", own_root]
    argv += ["--protocol", own_root / "protocol.yaml", "--work-dir", tmp_path / "w"]
    assert main([str(a) for a in argv]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"mask file {own_root / 'masks'}" in line and "colour" in line


def truth_of(root):
    meta = read_split(root / "metadata" / "test")
    return meta, GroundTruth(meta, SETTINGS, root / "masks")


def test_masks_outside_the_checked_sample_are_validated_when_read(own_root):
    meta, truth = truth_of(own_root)
    image_id = meta.image_ids[7]
    path = own_root / "masks" / image_id
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(path), cv2.resize(gray, (40, 44), interpolation=cv2.INTER_NEAREST))
    with pytest.raises(MaskError, match=rf"{path} is 40x44 but its image is 48x48"):
        truth.masks(image_id)
    graded = gray.copy()
    graded[:2] = 128  # not a mask: a grayscale picture
    cv2.imwrite(str(path), graded)
    with pytest.raises(MaskError, match=rf"{path} holds values other than 0/255 or 0/1.*128"):
        truth.masks(image_id)
    rgb = np.stack([gray, gray, np.zeros_like(gray)], axis=-1)
    cv2.imwrite(str(path), rgb)
    with pytest.raises(MaskError, match=rf"{path} is a colour image"):
        truth.masks(image_id)
    cv2.imwrite(str(path), np.zeros((48, 48), np.uint16) + 65535)
    with pytest.raises(MaskError, match="16-bit"):
        truth.masks(image_id)
    path.write_bytes(b"not a png")
    with pytest.raises(MaskError, match="cannot be decoded"):
        truth.masks(image_id)


def test_binary_masks_in_every_accepted_form_read_alike(tiny_root, tmp_path):
    path = tiny_root / "masks" / read_split(tiny_root / "metadata" / "test").image_ids[0]
    gray = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2 and set(np.unique(gray)) == {0, 255}
    expected = read_mask(path, (SIZE, SIZE))
    forms = {
        "ones.png": gray // 255,  # 0/1
        "rgb.png": np.stack([gray] * 3, axis=-1),
        "rgba.png": np.stack([gray] * 3 + [np.full_like(gray, 7)], axis=-1),  # alpha ignored
    }
    for name, array in forms.items():
        cv2.imwrite(str(tmp_path / name), array)
    palette = Image.fromarray(gray).convert("P")
    palette.save(tmp_path / "palette.png")
    Image.fromarray(gray > 0).save(tmp_path / "bits.png")  # 1-bit
    for name in [*forms, "palette.png", "bits.png"]:
        got = read_mask(tmp_path / name, (SIZE, SIZE), image_size=(SIZE, SIZE))
        np.testing.assert_array_equal(got, expected, err_msg=name)


# --- 3. evaluate-maps without tracebacks --------------------------------------------------------


def test_a_huge_size_is_refused(tiny_root, tmp_path, capsys):
    save_maps(tiny_root, tmp_path / "maps", lambda mask: mask.astype(np.float32))
    code = main(
        ["evaluate-maps", "--maps", str(tmp_path / "maps")]
        + ["--metadata", str(tiny_root / "metadata" / "test"), "--size", "100000", "100000"]
    )
    assert code == 2
    assert "at most 4096" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda path: np.save(path, np.zeros((0, 96))), "is empty"),
        (lambda path: path.write_text("hello"), "is not a NumPy array file"),
        (lambda path: np.save(path, np.array([{"a": 1}]), allow_pickle=True), "Python objects"),
        (lambda path: np.savez(path.with_suffix(""), np.zeros((4, 4))), "NumPy array file"),
        (lambda path: np.save(path, np.zeros((4, 4), complex)), "real numbers"),
        (lambda path: path.write_bytes(b"\x93NUMPY\x01\x00"), "not a readable .npy"),
    ],
)
def test_maps_that_are_not_maps_are_named(tiny_root, tmp_path, capsys, write, expected):
    ids = save_maps(tiny_root, tmp_path / "maps", lambda mask: mask.astype(np.float32))
    target = tmp_path / "maps" / f"{ids[0]}.npy"
    target.unlink()
    write(target)
    if not target.exists():  # np.savez appends .npz
        target.with_suffix(".npz").rename(target)
    assert evaluate_maps(tiny_root, tmp_path / "maps") == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(target) in line and expected in line and "allow_pickle" not in line


# --- 4. metadata: a BOM, and image sizes checked when the image is decoded -----------------------


def test_a_utf8_bom_in_any_metadata_file_is_accepted(own_root):
    split = own_root / "metadata" / "test"
    before = read_split(split, num_classes=TINY.num_classes)
    for path in split.iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    after = read_split(split, num_classes=TINY.num_classes)
    assert after.image_ids == before.image_ids and after.labels == before.labels
    assert after.sizes == before.sizes and after.masks == before.masks
    assert all((after.boxes[i] == before.boxes[i]).all() for i in before.image_ids)


def _shrink_image(root, index: int):
    meta = read_split(root / "metadata" / "test")
    path = root / "images" / meta.image_ids[index]
    Image.open(path).resize((40, 36)).save(path)
    return meta, path


def test_an_image_contradicting_image_sizes_is_caught_when_decoded(own_root):
    meta, path = _shrink_image(own_root, 4)
    dataset = WSOLImageDataset(meta, own_root / "images", (SIZE, SIZE), (0, 0, 0), (1, 1, 1))
    dataset[3]
    with pytest.raises(ImageSizeError) as info:
        dataset[4]  # not among the images read_split's sample decodes
    message = str(info.value)
    assert str(path) in message and "40x36" in message and "48x48" in message
    assert str(meta.split_dir / "image_sizes.txt") in message


def test_a_mis_sized_image_stops_eval_with_one_error_line(own_root, tmp_path, capsys):
    _, path = _shrink_image(own_root, 4)
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", own_root]
    argv += ["--protocol", own_root / "protocol.yaml", "--work-dir", tmp_path / "w"]
    assert main([str(a) for a in [*argv, "--num-workers", 1]]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and "40x36" in line


def test_an_undecodable_image_in_a_worker_is_one_error_line(own_root, tmp_path, capsys):
    """A DataLoader worker's error comes back with the worker's traceback as its text: the
    command line still prints the message alone."""
    meta = read_split(own_root / "metadata" / "test")
    path = own_root / "images" / meta.image_ids[4]  # not among the images the checks decode
    path.write_bytes(b"\x89PNG truncated")
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", own_root]
    argv += ["--protocol", own_root / "protocol.yaml", "--work-dir", tmp_path / "w"]
    assert main([str(a) for a in [*argv, "--num-workers", 1]]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: image {path} cannot be decoded")


def test_an_undecodable_image_after_training_keeps_the_weights_for_resume(
    own_root, tmp_path, capsys
):
    meta = read_split(own_root / "metadata" / "test")
    path = own_root / "images" / meta.image_ids[4]  # not among those decoded at start
    good = path.read_bytes()
    path.write_bytes(b"\x89PNG x")
    work = tmp_path / "w"
    argv = ["run", "--method", "toy_method:ToyCAM", "--dataset", "synthetic"]
    argv += ["--data-root", own_root, "--protocol", own_root / "protocol.yaml"]
    argv = [str(a) for a in [*argv, "--work-dir", work, "-o", "train.max_epochs=1"]]
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and "weights are kept" in line and "--resume" in line
    assert (work / "weights.pt").is_file() and not (work / "result.json").exists()
    trained = {p.name: p.stat().st_mtime_ns for p in (work / "train").glob("epoch_*.pth")}
    path.write_bytes(good)  # the fix the line names: evaluated, not trained again
    assert main([*argv, "--resume"]) == 0
    assert (work / "result.json").is_file()
    assert {p.name: p.stat().st_mtime_ns for p in (work / "train").glob("epoch_*.pth")} == trained


# --- text files that are not UTF-8 ------------------------------------------------------------


def test_a_class_name_file_that_is_not_utf8_is_named_with_its_line(own_root, capsys):
    with open(own_root / "classnames.txt", "ab") as f:
        f.write(b"caf\xe9\n")
    argv = ["fingerprint", "--dataset", "synthetic", "--data-root", str(own_root)]
    assert main([*argv, "--protocol", str(own_root / "protocol.yaml")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{own_root / 'classnames.txt'} line 4" in line and "UTF-8" in line


def test_a_grid_or_published_file_that_is_not_utf8_is_named(tmp_path, capsys):
    from wsolbench.sweep.grid import read_grid_file

    grid = tmp_path / "GRID.yaml"
    grid.write_bytes(b"methods: [cam]\ndatasets: [caf\xe9]\n")
    with pytest.raises(ValueError, match=f"{grid} line 2: not UTF-8"):
        read_grid_file(grid)
    published = tmp_path / "published.yaml"
    published.write_bytes(b"rows:\n- method: caf\xe9\n")
    board = Path(__file__).parent / "fixtures" / "results" / "cub"
    assert main(["compare", str(board), "--published", str(published)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{published} line 2: not UTF-8" in line
