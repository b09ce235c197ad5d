"""TeD-Loc: text targets, pseudo-labels, MIL pooling, losses, teachers, text cache, state dicts."""

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import wsolbench.blocks.clip_text as clip_text
from methods.tedloc.teachers import otsu_thresholds, select_pseudo_labels
from methods.tedloc.text import _similarity_groups, orthogonalize_targets, qr_targets
from wsolbench.blocks.open_clip_configs import TINY_CLIP
from wsolbench.config import pretrained_off_overrides, resolve_config
from wsolbench.method import TrainingData, build_method
from wsolbench.protocol import load_protocol, protocol_from_snapshot
from wsolbench.registry import get_method

TINY_BACKBONE = [
    "backbone.kwargs={channels: [8, 16], strides: [2, 2], dilations: [1, 1]}",
]
NAMES = ["red dotted-headed shape", "blue ringed-headed shape", "green solid-headed shape"]


# the data a run trains on, which a run: or clip teacher does not read (only the cam teacher does)
UNUSED_DATA = TrainingData(
    dataset="synthetic",
    protocol="synthetic-v1",
    protocol_id="synthetic-v1",
    protocol_hash="0" * 64,
    data_root=Path("/nonexistent"),
    data_fingerprint="0" * 64,
    device="cpu",
)


def tiny(*overrides, classnames=NAMES, seed=0):
    cls = get_method("tedloc")
    # pretrained parts off, the cam teacher included (teacher=self)
    base = [*pretrained_off_overrides(cls), *TINY_BACKBONE]
    config = resolve_config(cls, "synthetic", [*base, *overrides])
    return build_method(cls, config, len(classnames), seed=seed, classnames=classnames)


def unit_rows(rows, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=1)


# ------------------------------------------------------------------ text targets


def test_qr_targets_are_orthonormal_and_keep_their_signs():
    embeddings = unit_rows(11, 64)
    embeddings[3] = -embeddings[3]  # a sign the QR must keep, whatever LAPACK returns
    targets = qr_targets(embeddings)
    assert torch.allclose(targets @ targets.T, torch.eye(11), atol=1e-5)
    assert ((targets * embeddings).sum(dim=1) > 0).all()
    assert torch.allclose(targets[0], embeddings[0], atol=1e-5)  # background: itself
    # row j lies in the span of the first j + 1 embeddings (Gram-Schmidt order)
    basis = embeddings[:5].T
    coeffs = torch.linalg.lstsq(basis, targets[4][:, None]).solution
    assert torch.allclose(basis @ coeffs, targets[4][:, None], atol=1e-5)


def test_qr_falls_back_to_none_with_a_warning_when_c_plus_1_exceeds_d(caplog):
    embeddings = unit_rows(70, 64)  # C + 1 = 70 > d = 64
    with caplog.at_level(logging.WARNING, logger="methods.tedloc.text"):
        targets = orthogonalize_targets(embeddings, "qr")
    assert torch.equal(targets, embeddings)
    assert "C + 1 = 70 > d = 64" in caplog.text and "qr_groups" in caplog.text
    # exactly at the limit QR still runs
    square = orthogonalize_targets(unit_rows(64, 64), "qr")
    assert torch.allclose(square @ square.T, torch.eye(64), atol=1e-4)


def test_qr_groups_orthogonalize_similar_classes_together():
    embeddings = unit_rows(70, 16, seed=1)
    targets = orthogonalize_targets(embeddings, "qr_groups", group_size=8)
    assert torch.allclose(targets[0], embeddings[0], atol=1e-5)
    assert torch.allclose(targets.norm(dim=1), torch.ones(70), atol=1e-5)
    assert ((targets * embeddings).sum(dim=1) > 0).all()
    # every class is orthogonal to the background and to at least its own group (≤ 7 classes)
    assert torch.allclose(targets[1:] @ targets[0], torch.zeros(69), atol=1e-5)
    groups = _similarity_groups(embeddings[1:], 7)
    assert sorted(i for g in groups for i in g) == list(range(69)) and max(map(len, groups)) == 7
    for group in groups:
        block = targets[1:][group]
        assert torch.allclose(block @ block.T, torch.eye(len(group)), atol=1e-5)


def test_none_keeps_the_embeddings():
    embeddings = unit_rows(5, 8)
    assert torch.equal(orthogonalize_targets(embeddings, "none"), embeddings)
    with pytest.raises(ValueError, match="orthogonalize"):
        orthogonalize_targets(embeddings, "svd")


# ------------------------------------------------------------------ pseudo-labels


def test_topk_selection_takes_exactly_the_configured_fractions():
    maps = torch.rand(4, 100, generator=torch.Generator().manual_seed(0))
    labels = select_pseudo_labels(maps, "topk", fg_ratio=0.2, bg_ratio=0.5)
    assert ((labels == 1).sum(dim=1) == 20).all()
    assert ((labels == 0).sum(dim=1) == 50).all()
    assert ((labels == -1).sum(dim=1) == 30).all()
    order = maps.argsort(dim=1)
    assert (labels.gather(1, order[:, -20:]) == 1).all()
    assert (labels.gather(1, order[:, :50]) == 0).all()
    # ties: a constant map still gives exact counts
    flat = select_pseudo_labels(torch.zeros(1, 10), "topk", fg_ratio=0.3, bg_ratio=0.4)
    assert int((flat == 1).sum()) == 3 and int((flat == 0).sum()) == 4


def test_otsu_selection_follows_the_object_extent():
    maps = torch.full((2, 100), 0.1)
    maps[0, :7] = 0.9  # a small object
    maps[1, :40] = 0.8  # a large one
    maps += 0.01 * torch.rand(2, 100, generator=torch.Generator().manual_seed(0))
    labels = select_pseudo_labels(maps, "otsu", bg_ratio=0.5)
    assert (labels[0, :7] == 1).all() and int((labels[0] == 1).sum()) == 7
    assert (labels[1, :40] == 1).all() and int((labels[1] == 1).sum()) == 40
    assert ((labels == 0).sum(dim=1) == 50).all()
    assert torch.allclose(otsu_thresholds(torch.tensor([[0.0, 0.0, 1.0, 1.0]])), torch.ones(1))


def test_localization_loss_ignores_unlabelled_cells():
    method = tiny("loc_balanced=false")
    logits = torch.zeros(1, 10, requires_grad=True)
    fg = torch.tensor([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    bg = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    loss = method._loc_loss(logits, fg, bg)
    loss.backward()
    assert torch.all(logits.grad[0, 2:7] == 0) and torch.all(logits.grad[0, :2] < 0)
    assert torch.all(logits.grad[0, 7:] > 0)
    assert torch.isclose(loss, torch.tensor(0.6931), atol=1e-4)


# ------------------------------------------------------------------ the model


def test_mil_pooling_is_the_probability_weighted_mean():
    method = tiny().eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fg_logits, projections = method._heads(method.backbone(images))
        embeddings = F.normalize(projections, dim=1)  # e_i: unit per cell
        p = torch.sigmoid(fg_logits).flatten(1)
        v = (p[:, None] * embeddings.flatten(2)).sum(-1) / p.sum(1, keepdim=True)
        scale = method.logit_scale.exp()
        expected = scale * F.normalize(v, dim=1) @ method.text_targets[1:].T
        assert torch.allclose(method._mil_logits(fg_logits, projections), expected, atol=1e-5)
        prediction = method.predict(images, torch.zeros(2, dtype=torch.long))
        assert torch.allclose(prediction.logits, expected, atol=1e-5)
        assert torch.allclose(prediction.maps, torch.sigmoid(fg_logits))
    mean = tiny("mil_pooling=mean").eval()
    with torch.no_grad():
        fg_logits, projections = mean._heads(mean.backbone(images))
        unit = F.normalize(projections, dim=1)
        plain = F.normalize(unit.flatten(2).mean(-1), dim=1) @ mean.text_targets[1:].T
        assert torch.allclose(
            mean._mil_logits(fg_logits, projections), mean.logit_scale.exp() * plain, atol=1e-5
        )


@pytest.mark.parametrize("variant", [[], ["use_distill=false"], ["fg_rule=topk"]])
def test_losses_are_finite_and_have_gradients_after_the_warmup(variant):
    method = tiny(*variant).train()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    method.on_train_step()  # the EMA teacher starts as a copy
    assert torch.equal(method.ema_cam_weight, method.cam_head.weight)
    method.on_train_epoch(method.warmup_epochs, 10)
    assert method.pseudo_labels_active
    out = method.loss(images, labels)
    expected = {"loss_cls", "loss_teacher", "loss_loc", "pl_fg", "pl_bg"}
    expected |= {"acc_mil", "acc_cam", "logit_scale"}  # logged statistics
    if "use_distill=false" not in variant:
        expected.add("loss_distill")
    assert set(out) == expected
    fg, bg = float(out["pl_fg"]), float(out["pl_bg"])  # 8x8 grid, bg_ratio 0.5
    assert fg >= 1 and bg <= 32 and fg + bg <= 64
    if "fg_rule=topk" in variant:
        assert (fg, bg) == (13, 32)  # round(0.2 * 64), round(0.5 * 64)
    for key, value in out.items():
        assert torch.isfinite(value), key
        if key.startswith("loss_"):
            assert value.requires_grad and float(value) > 0, key
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    for name in ("fg_head.weight", "projector.0.weight", "cam_head.weight", "logit_scale"):
        grad = dict(method.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_warmup_has_no_pseudo_labels_and_ema_follows_the_classifier():
    method = tiny("ema_momentum=0.5").train()
    out = method.loss(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert float(out["loss_loc"].detach()) == 0
    assert float(out["pl_fg"]) == 0 and float(out["pl_bg"]) == 0
    method.on_train_step()
    old = method.ema_cam_weight.clone()
    with torch.no_grad():
        method.cam_head.weight.add_(1.0)
    method.on_train_step()
    assert torch.allclose(method.ema_cam_weight, 0.5 * old + 0.5 * method.cam_head.weight)
    assert int(method.ema_steps) == 2


def parts_reached(method, loss: str, images, labels, parts: dict[str, str]) -> dict[str, bool]:
    """For each part (name → parameter name, ``backbone.`` for the backbone's first one): whether
    the gradient of the loss ``loss`` reaches it."""
    method.zero_grad()
    method.loss(images, labels)[loss].backward()
    named = dict(method.named_parameters())
    found = {}
    for part, name in parts.items():
        name = next(k for k in named if k.startswith(name)) if name.endswith(".") else name
        grad = named[name].grad
        found[part] = grad is not None and float(grad.abs().sum()) > 0
    return found


def test_mil_detach_keeps_the_classifier_loss_out_of_the_backbone():
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    parts = {
        "backbone": "backbone.",
        "projector": "projector.0.weight",
        "fg_head": "fg_head.weight",
        "logit_scale": "logit_scale",
    }

    def grads(method):
        return parts_reached(method, "loss_cls", images, labels, parts)

    heads_only = {"backbone": False, "projector": True, "fg_head": True, "logit_scale": True}
    everything = dict.fromkeys(heads_only, True)
    warmup = tiny("mil_detach=warmup").train()
    assert grads(warmup) == heads_only  # epoch 0: the teacher is warming up
    warmup.on_train_epoch(warmup.warmup_epochs, 10)
    assert grads(warmup) == everything
    always = tiny("mil_detach=always").train()
    always.on_train_epoch(always.warmup_epochs, 10)
    assert grads(always) == heads_only
    assert grads(tiny("mil_detach=never").train()) == everything
    # the logits themselves do not change: only where the gradient goes
    never, detached = tiny("mil_detach=never").eval(), tiny("mil_detach=always").eval()
    with torch.no_grad():
        assert torch.equal(
            never.predict(images, labels).logits, detached.predict(images, labels).logits
        )


def test_teacher_detach_keeps_the_cam_loss_out_of_the_backbone():
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    parts = {"backbone": "backbone.", "cam_head": "cam_head.weight"}
    detached = tiny("teacher_detach=true").train()
    probe = parts_reached(detached, "loss_teacher", images, labels, parts)
    assert probe == {"backbone": False, "cam_head": True}  # a linear probe
    shared = parts_reached(tiny().train(), "loss_teacher", images, labels, parts)
    assert shared == {"backbone": True, "cam_head": True}  # CAM's loss shapes the shared backbone


def test_frozen_self_teacher_is_the_warmed_up_student_and_stays_fixed():
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    method = tiny("self_teacher=frozen", "warmup_epochs=2").train()
    assert not bool(method.teacher_ready) and not method.teacher_backbone.training
    assert "loss_teacher" in method.loss(images, labels)  # warm-up: the CAM head trains
    method.on_train_step()
    method.on_train_epoch(1, 10)
    assert not bool(method.teacher_ready)
    method.on_train_epoch(2, 10)  # the first epoch with pseudo-labels: a copy now
    assert bool(method.teacher_ready)
    student = method.backbone.state_dict()
    assert all(torch.equal(v, student[k]) for k, v in method.teacher_backbone.state_dict().items())
    assert torch.equal(method.teacher_cam_weight, method.ema_cam_weight)
    frozen = {k: v.clone() for k, v in method.teacher_backbone.state_dict().items()}
    maps_before = method.teacher_maps(images, labels, method.backbone(images))
    out = method.loss(images, labels)
    assert "loss_teacher" not in out and "acc_cam" not in out  # its CAM loss stopped
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    with torch.no_grad():  # a student step (and an EMA step) must not move the teacher
        for param in method.parameters():
            if param.grad is not None:
                param.sub_(0.5 * param.grad)
    method.on_train_step()
    method.train()
    assert not method.teacher_backbone.training  # batch-norm statistics stay frozen
    assert all(torch.equal(v, frozen[k]) for k, v in method.teacher_backbone.state_dict().items())
    features = method.backbone(images)
    assert torch.equal(method.teacher_maps(images, labels, features), maps_before)
    # the map is the frozen CAM: W_y · teacher features
    with torch.no_grad():
        expected = torch.einsum(
            "bd,bdhw->bhw",
            method.teacher_cam_weight.flatten(1)[labels],
            method.teacher_backbone(images),
        )
    assert torch.allclose(maps_before, expected)
    # a resume rebuilds it from the checkpoint, not from the (trained-on) student
    resumed = tiny("self_teacher=frozen", "warmup_epochs=2")
    resumed.load_state_dict(method.state_dict())
    resumed.on_train_epoch(5, 10)
    assert all(torch.equal(v, frozen[k]) for k, v in resumed.teacher_backbone.state_dict().items())
    exported = method.inference_state_dict()
    assert not [k for k in exported if k.startswith(("teacher_", "cam_head", "ema_"))]


def test_centered_teacher_ignores_a_shift_common_to_every_class():
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    centered, raw = tiny("teacher_center=true").eval(), tiny().eval()
    features = centered.backbone(images)  # same seed: the same backbone in both
    weights = centered.ema_cam_weight.flatten(1)
    before = centered.teacher_maps(images, labels, features)
    expected = torch.einsum("bd,bdhw->bhw", (weights - weights.mean(0))[labels], features)
    assert torch.allclose(before, expected, atol=1e-5)
    raw_before = raw.teacher_maps(images, labels, features)
    shift = torch.rand_like(centered.ema_cam_weight[:1])  # a shift no softmax can see
    for method in (centered, raw):
        method.ema_cam_weight.add_(shift)
    assert torch.allclose(centered.teacher_maps(images, labels, features), before, atol=1e-5)
    assert not torch.allclose(raw.teacher_maps(images, labels, features), raw_before)  # raw CAM


def test_weights_hold_no_teacher_and_no_text_tower():
    method = tiny()
    exported = method.inference_state_dict()
    assert "ema_cam_weight" in method.state_dict()  # in training checkpoints (exact resume)
    assert not [k for k in exported if k.startswith(("cam_head", "ema_"))]
    assert not [k for k in exported if "token_embedding" in k or "transformer" in k]
    assert exported["text_targets"].shape == (len(NAMES) + 1, 64)
    assert method.text_prior == "none" and method.pretrained == "none"
    same_text = tiny(seed=3)  # same (random, seeded) text tower: the same targets
    same_text.load_state_dict(exported, strict=False)
    assert same_text.text_prior == "none"
    other = tiny('text.templates=["a photo of the {}."]')
    other.load_state_dict(exported, strict=False)
    assert other.text_prior == "weights-file"
    assert torch.equal(other.text_targets, exported["text_targets"])


def test_pretrained_option_is_a_tuple_that_no_pretrained_turns_off():
    cls = get_method("tedloc")
    off = ["backbone.pretrained=false", "text.pretrained=false", "teacher=self"]
    assert pretrained_off_overrides(cls) == off
    config = resolve_config(cls, "cub", pretrained_off_overrides(cls))
    assert config["backbone"]["pretrained"] is False and config["text"]["pretrained"] is False
    # synthetic's teacher is a cam run trained before this one: off, it is the self teacher,
    # recorded as such (the same config, and row, as -o teacher=self)
    assert resolve_config(cls, "synthetic", off) == resolve_config(
        cls, "synthetic", [*off[:2], "teacher=self"]
    )
    assert tiny().teacher_kind == "self" and tiny().cam_head is not None
    assert pretrained_off_overrides(get_method("cam")) == ["backbone.pretrained=false"]


def test_a_rebuild_drops_the_teacher_unless_the_diagnosis_keeps_it():
    from wsolbench.config import without_pretrained

    cls = get_method("tedloc")
    config = resolve_config(cls, "synthetic")
    assert without_pretrained(cls, config)["teacher"] == "self"  # weights.pt: no teacher needed
    kept = without_pretrained(cls, config, keep=("teacher",))  # methods/tedloc/diagnose.py
    assert kept["teacher"] == "cam" and kept["text"]["pretrained"] is False


def test_run_teacher_uses_a_finished_cam_run(tmp_path):
    from wsolbench.train.weights import export_weights

    cam_cls = get_method("cam")
    cam_config = resolve_config(
        cam_cls, "synthetic", ["backbone.kwargs={channels: [8], strides: [4], dilations: [1]}"]
    )
    cam = build_method(cam_cls, cam_config, len(NAMES))
    export_weights(cam, tmp_path / "weights.pt")
    # the record `wsolbench run` writes, under a protocol of this test's class count
    content = {**load_protocol("synthetic-v1").content, "num_classes": len(NAMES)}
    content["id"] = "synthetic-tiny"  # a protocol of its own: not the shipped synthetic-v1
    del content["classnames"], content["data_fingerprint"]
    protocol = protocol_from_snapshot({"content": content, "classnames": []}, "test")
    record = {"method": "cam", "dataset": "synthetic", "protocol": protocol.id}
    record.update(protocol_hash=protocol.hash, seed=0, config=cam_config)
    record["protocol_spec"] = protocol.snapshot()
    from wsolbench.results.workdir import write_record

    write_record(tmp_path, record)
    assert "teacher" not in tiny(f"teacher=run:{tmp_path}").provenance  # built for training only
    method = tiny(f"teacher=run:{tmp_path}").train()
    with pytest.raises(RuntimeError, match=r"call prepare_training\(data\) before training"):
        method.loss(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    method.prepare_training(UNUSED_DATA)  # what `wsolbench run` does first
    assert method.pseudo_labels_active  # no warm-up with an external teacher
    assert "cam_head.weight" not in method.state_dict()
    assert not [k for k in method.state_dict() if "classifier" in k]  # the teacher is not held
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    out = method.loss(images, labels)
    assert "loss_teacher" not in out and float(out["pl_fg"]) >= 1
    # the teacher run is part of what the result was made from: its weights' digest is recorded
    teacher = method.provenance["teacher"]
    assert teacher.startswith(f"run:{tmp_path.name} (weights sha256 ")  # by name and content
    assert f"teacher={teacher}" in method.pretrained
    with torch.no_grad():
        expected = cam.eval().predict(images, labels).maps  # cam's 8x8 grid = the student's
    assert torch.allclose(method.teacher_maps(images, labels, torch.zeros(2, 16, 8, 8)), expected)
    with pytest.raises(ValueError, match="config.yaml and weights.pt"):
        tiny(f"teacher=run:{tmp_path / 'missing'}").prepare_training(UNUSED_DATA)


def test_clip_teacher_needs_real_weights():
    with pytest.raises(ValueError, match="teacher clip needs real CLIP weights"):
        tiny("teacher=clip").prepare_training(UNUSED_DATA)


# ------------------------------------------------------------------ the text cache


def test_text_cache_is_reused_and_invalidated_by_class_names(monkeypatch, tmp_path):
    calls = []
    real = clip_text.encode_rows

    def counting(loaded, rows, *args, **kwargs):
        calls.append([list(r) for r in rows])
        return real(loaded, rows, *args, **kwargs)

    monkeypatch.setattr(clip_text, "encode_rows", counting)
    cache = f"text.cache_dir={tmp_path}"
    first = tiny(cache)
    second = tiny(cache, seed=5)
    assert len(calls) == 1  # the second build read the cache
    assert torch.equal(first.text_targets, second.text_targets)
    assert len(list((tmp_path / "text").glob("*.pt"))) == 1
    renamed = tiny(cache, classnames=[*NAMES[:2], "yellow checkered-headed shape"])
    assert len(calls) == 2 and calls[1][-1][0] == "a photo of a yellow checkered-headed shape."
    assert not torch.equal(renamed.text_targets, first.text_targets)
    tiny(cache, 'text.templates=["a photo of the {}."]')
    assert len(calls) == 3  # templates are part of the key too
    assert TINY_CLIP in first.text_prior or first.text_prior == "none"


def test_distillation_loss_is_the_specs_cross_entropy_over_cosines():
    """tedloc.md: a pseudo-foreground patch's cosines to [t_bg, t_1..t_C] / τ, cross-entropy
    with its class y; a pseudo-background patch's with bg; ignored patches count for nothing;
    the mean over the labelled patches. Written cell by cell here."""
    method = tiny().eval()
    generator = torch.Generator().manual_seed(0)
    projections = torch.randn(2, method.text_targets.shape[1], 2, 3, generator=generator)
    labels = torch.tensor([2, 0])
    pseudo = torch.tensor([[1, 1, 0, -1, -1, 0], [-1, 1, 0, 0, 0, -1]])
    terms = []
    for b in range(2):
        for i in range(6):
            if pseudo[b, i] < 0:
                continue
            e = projections[b].flatten(1)[:, i]
            cosines = torch.stack([F.cosine_similarity(e, t, dim=0) for t in method.text_targets])
            target = int(labels[b]) + 1 if pseudo[b, i] == 1 else 0
            terms.append(-torch.log_softmax(cosines / method.tau_distill, dim=0)[target])
    expected = torch.stack(terms).mean()
    loss = method._distill_loss(projections, labels, pseudo)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
