"""``tedloc``: TeD-Loc (Murtaza et al., arXiv 2501.12632), reconstructed from the paper's text.

Not a port of the authors' code (which could not be read): every choice below is a config key, and
``methods/tedloc/README.md`` states each one and its default (``shared/spec/tedloc.md``).

::

    image ─backbone─> patch features z [B, D, h, w]
      ├─ FG/BG head h (1×1 conv)        → p = σ(h(z)) [B, h, w]   the class-agnostic map
      ├─ projection g (1×1 MLP), L2-norm → e [B, d, h, w]          aligned with CLIP text targets
      │     MIL: v = Σ p e / Σ p,  logits = s · cos(v, t_c)        the classifier
      └─ (training) teacher CAM head W (1×1 conv, ``teacher: self``) → pseudo-labels for h and g

Losses (each logged separately): ``loss_loc`` BCE of h on pseudo-labelled cells; ``loss_distill``
cross-entropy of cos(e_i, [t_bg, t_1..t_C]) / τ with target y on pseudo-foreground, bg on
pseudo-background; ``loss_cls`` cross-entropy of the MIL logits; ``loss_teacher`` CAM's
cross-entropy for the ``self`` teacher. ``pl_fg`` / ``pl_bg``: pseudo-labelled cells per image in
the batch (logged, not summed).

Inference needs the backbone, h, g, the logit scale and the C + 1 text targets (a [C + 1, d]
buffer, the MIL classifier's weights); nothing of the text tower or any teacher is built into
``weights.pt``.
"""

from __future__ import annotations

import copy
import functools
import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.tedloc.backbone import build_tedloc_backbone
from methods.tedloc.settings import DEFAULTS, MIL_DETACH, PRESETS, SELF_TEACHERS, TEACHERS
from methods.tedloc.teachers import FG_RULES, external_teacher, select_pseudo_labels
from methods.tedloc.text import ORTHOGONALIZE, load_text_embeddings, orthogonalize_targets
from wsolbench.config import RUN_PREFIX
from wsolbench.method import Capabilities, MethodConfig, Prediction, TrainingData, WSOLMethod
from wsolbench.registry import register_method

logger = logging.getLogger(__name__)

_MAX_LOG_SCALE = math.log(100.0)  # CLIP's cap on the logit scale


@register_method("tedloc")
class TeDLoc(WSOLMethod):
    """TeD-Loc: text-distilled patch embeddings, a class-agnostic FG/BG head, MIL classification.

    Args:
        num_classes: C.
        classnames: the C class names (embedded with the text encoder).
        backbone: ``{name, pretrained, checkpoint, clip_tag, kwargs}``: a timm name or ``wsolcnn``
            (:func:`wsolbench.blocks.backbones.build_backbone`), or ``clip:<open_clip model>`` for
            CLIP's image tower (weights: ``checkpoint`` or the cached ``clip_tag``).
        text: ``{model, pretrained, checkpoint, templates, background_words,
            background_template, seed, cache_dir}``: the open_clip text encoder (``pretrained``:
            a tag from the local cache, or false for a random tower seeded by ``seed``), prompts,
            and the embedding cache folder (None: ``$WSOLBENCH_CACHE``).
        orthogonalize: ``none`` | ``qr`` | ``qr_groups`` (:mod:`methods.tedloc.text`).
        qr_group_size: columns per QR of ``qr_groups`` (None: d).
        proj_hidden: hidden width of the projection MLP g (None: D).
        fg_head: ``{hidden, kernel}``: h is a ``kernel``×``kernel`` conv (``hidden`` > 0: a 1×1
            conv to ``hidden`` channels and ReLU first).
        teacher: ``cam`` (a ``cam`` run on the same data, trained on first use and cached:
            :mod:`wsolbench.blocks.cam_teacher`) | ``run:<work_dir>`` | ``self`` | ``clip`` |
            ``synthcam-v1`` (``cam`` on ``synthetic-v1`` only: the name older records carry).
        warmup_epochs: epochs before the ``self`` teacher gives pseudo-labels.
        ema_momentum: momentum of the ``self`` teacher's EMA copy (updated every step).
        self_teacher: how the ``self`` teacher reads its maps once the warm-up is over: ``live``
            (its EMA classifier over the student's current features, which keep changing with
            the pseudo-labels they are trained on) or ``frozen`` (a copy of the backbone and the
            CAM classifier taken at the end of the warm-up, never trained again; its CAM loss
            stops there).
        teacher_center: the ``self`` teacher's map of class y uses W_y − mean_c W_c, the part of
            the CAM classifier its softmax loss determines (a shift common to every class's
            weights changes no softmax, so it is left to initialisation and decay, yet it moves
            the min-max normalized map); false uses W_y itself (CAM's map).
        teacher_detach: the ``self`` teacher's CAM classifier learns on detached features (a
            linear probe of the student's features): ``loss_teacher`` no longer reaches the
            backbone, which then learns from TeD-Loc's own losses only.
        fg_rule, fg_ratio, bg_ratio: pseudo-label selection
            (:func:`methods.tedloc.teachers.select_pseudo_labels`).
        tau_distill: temperature τ_t of ``loss_distill``.
        logit_scale_init: initial MIL logit scale s (learnt, in log space, capped at 100).
        use_distill: false drops ``loss_distill`` (ablation).
        mil_pooling: ``weighted`` (Σ p e / Σ p) or ``mean`` (ablation).
        mil_detach: when ``loss_cls`` may not reach the backbone (it still trains the projection,
            the FG head and the logit scale): ``never``, ``warmup`` (while the ``self`` teacher
            warms up and gives no pseudo-labels) or ``always``.
        loc_balanced: average the BCE of foreground and background cells separately.
        loss_weights: ``{loc, distill, cls, teacher}``.
    """

    # a teacher trained before this run (cam, run:) is a pretrained part: --no-pretrained
    # (and a rebuild from weights.pt) sets the self teacher
    capabilities = Capabilities(
        needs_classnames=True,
        pretrained_options=("backbone.pretrained", "text.pretrained", "teacher=self"),
        reference=(
            "reconstructed from TeD-Loc's paper (arXiv 2501.12632); no public code to check it "
            "against"
        ),
    )
    config = MethodConfig(defaults=DEFAULTS, presets=PRESETS)

    def __init__(
        self,
        num_classes: int,
        classnames: list[str],
        backbone: dict,
        text: dict,
        orthogonalize: str,
        qr_group_size: int | None,
        proj_hidden: int | None,
        fg_head: dict | None,
        teacher: str,
        warmup_epochs: int,
        ema_momentum: float,
        self_teacher: str,
        teacher_center: bool,
        teacher_detach: bool,
        fg_rule: str,
        fg_ratio: float,
        bg_ratio: float,
        tau_distill: float,
        logit_scale_init: float,
        use_distill: bool,
        mil_pooling: str,
        mil_detach: str,
        loc_balanced: bool,
        loss_weights: dict | None,
    ):
        super().__init__(num_classes)
        if mil_pooling not in ("weighted", "mean"):
            raise ValueError(f"mil_pooling: {mil_pooling!r} is not weighted or mean")
        if self_teacher not in SELF_TEACHERS:
            raise ValueError(
                f"self_teacher: {self_teacher!r} is not one of {', '.join(SELF_TEACHERS)}"
            )
        if mil_detach not in MIL_DETACH:
            raise ValueError(f"mil_detach: {mil_detach!r} is not one of {', '.join(MIL_DETACH)}")
        if fg_rule not in FG_RULES:
            raise ValueError(f"fg_rule: {fg_rule!r} is not one of {', '.join(FG_RULES)}")
        if orthogonalize not in ORTHOGONALIZE:
            raise ValueError(f"orthogonalize: {orthogonalize!r} is not one of {ORTHOGONALIZE}")
        if not (teacher in TEACHERS or str(teacher).startswith(RUN_PREFIX)):
            raise ValueError(f"teacher: {teacher!r} is not {', '.join(TEACHERS)} or run:<work_dir>")
        weights = {"loc": 1.0, "distill": 1.0, "cls": 1.0, "teacher": 1.0}
        unknown = set(loss_weights or {}) - set(weights)
        if unknown:
            raise ValueError(
                f"loss_weights: unknown terms {sorted(unknown)} (use {sorted(weights)})"
            )
        weights.update(loss_weights or {})
        self.loss_weights = {k: float(v) for k, v in weights.items()}
        self.teacher_kind = str(teacher) if teacher in ("self", "clip") else "run"
        self.warmup_epochs = int(warmup_epochs)
        self.ema_momentum = float(ema_momentum)
        self.teacher_center = bool(teacher_center)
        self.teacher_detach = bool(teacher_detach)
        self.self_teacher = self_teacher
        self.fg_rule, self.fg_ratio, self.bg_ratio = fg_rule, float(fg_ratio), float(bg_ratio)
        self.tau_distill = float(tau_distill)
        self.use_distill = bool(use_distill)
        self.mil_pooling = mil_pooling
        self.mil_detach = mil_detach
        self.loc_balanced = bool(loc_balanced)
        self._epoch = 0  # set by the engine (on_train_epoch); 0 outside training

        self.backbone = build_tedloc_backbone(dict(backbone))
        self.image_mean, self.image_std = self.backbone.mean, self.backbone.std
        channels = self.backbone.out_channels

        loaded, embeddings = load_text_embeddings(dict(text), list(classnames))
        # where each pretrained part came from: results and tables show it (WSOLMethod)
        self.provenance["backbone"] = getattr(self.backbone, "source", "none")
        self.provenance["text"] = loaded.source
        # said when training starts: a rebuild for evaluation also starts from a random tower,
        # and then loads the run's own targets from weights.pt
        self._random_text = loaded.name if loaded.source == "none" else None
        targets = orthogonalize_targets(embeddings, orthogonalize, qr_group_size)
        self.register_buffer("text_targets", targets.float())  # [C + 1, d], background first
        dim = targets.shape[1]

        hidden = int(proj_hidden or channels)
        self.projector = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1)
        )
        head = dict({"hidden": 0, "kernel": 1}, **(fg_head or {}))
        kernel, head_hidden = int(head["kernel"]), int(head["hidden"])
        if head_hidden > 0:
            self.fg_head = nn.Sequential(
                nn.Conv2d(channels, head_hidden, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(head_hidden, 1, kernel, padding=kernel // 2),
            )
        else:
            self.fg_head = nn.Conv2d(channels, 1, kernel, padding=kernel // 2)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(float(logit_scale_init))))

        # teacher "self": a CAM classifier on the patch features, trained jointly (loss_teacher);
        # its EMA copy (buffers: in checkpoints, so a resume is exact; not in weights.pt) makes the
        # pseudo-labels after the warm-up
        self.cam_head = nn.Conv2d(channels, num_classes, 1) if self.teacher_kind == "self" else None
        if self.cam_head is not None:
            self.register_buffer("ema_cam_weight", self.cam_head.weight.detach().clone())
            self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        # self_teacher frozen: the teacher network, filled from the student at the end of the
        # warm-up (a module from the start, so checkpoints hold it and a resume is exact)
        self.teacher_backbone = None
        if self.cam_head is not None and self_teacher == "frozen":
            self.teacher_backbone = copy.deepcopy(self.backbone).requires_grad_(False).eval()
            # once frozen, the CAM head leaves the loss: DDP must know (find_unused_parameters)
            self.unused_parameters = True
            self.register_buffer("teacher_cam_weight", torch.zeros_like(self.cam_head.weight))
            self.register_buffer("teacher_ready", torch.zeros((), dtype=torch.bool))
        # a frozen external teacher (cam, run, clip), held outside the module tree and
        # built by prepare_training(): inference, cost and rebuilds from weights never need it
        self._external = ()
        self._make_teacher = None
        if self.teacher_kind != "self":
            norm = (tuple(self.image_mean), tuple(self.image_std))
            clip = (loaded, embeddings[1:]) if teacher == "clip" else (None, None)  # else free
            self._make_teacher = functools.partial(
                external_teacher, teacher, num_classes, norm, *clip
            )

    def prepare_training(self, data: TrainingData) -> None:
        """Build the external teacher (``cam``: trained on ``data`` now if not cached) and name it
        in :attr:`provenance` (its weights are a pretrained part: results and ``--resume`` see
        it)."""
        if self._make_teacher is not None and not self._external:
            self._external = self._make_teacher(data)
            self.provenance["teacher"] = self._external[0].source
            if hasattr(self._external[0], "run"):  # a finished run's: how to rebuild it
                self.input_runs["teacher"] = self._external[0].run

    # ---------------------------------------------------------------- text targets

    @property
    def text_prior(self) -> str:
        """The text weights behind the targets (``provenance["text"]``): ``none`` (random
        tower), ``file:...``, ``cache:<model>/<tag>``, or ``weights-file`` once loaded from
        exported weights."""
        return self.provenance["text"]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Targets from a file that differ from the ones this instance computed were made by
        # another text tower: say so. A run's own checkpoint (same targets) keeps the source.
        loaded = state_dict.get(prefix + "text_targets")
        if loaded is not None and not (
            loaded.shape == self.text_targets.shape
            and torch.equal(loaded.to(self.text_targets), self.text_targets)
        ):
            self.provenance["text"] = "weights-file"
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def inference_state_dict(self) -> dict[str, Tensor]:
        """Backbone, FG/BG head, projection, logit scale and text targets; no teacher."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith(("cam_head.", "ema_", "teacher_"))
        }

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher_backbone is not None:  # frozen: its batch-norm statistics too
            self.teacher_backbone.eval()
        return self

    # ---------------------------------------------------------------- training hooks

    def on_train_epoch(self, epoch: int, max_epochs: int) -> None:
        self._epoch = int(epoch)
        if (
            self.teacher_backbone is not None
            and self.pseudo_labels_active
            and not bool(self.teacher_ready)
        ):
            self._freeze_teacher()

    @torch.no_grad()
    def _freeze_teacher(self) -> None:
        """``self_teacher: frozen``: the teacher becomes a copy of the warmed-up student's backbone
        and CAM classifier (its EMA copy, what the ``live`` teacher would read)."""
        self.teacher_backbone.load_state_dict(self.backbone.state_dict())
        self.teacher_cam_weight.copy_(self.ema_cam_weight)
        self.teacher_ready.fill_(True)
        logger.info("tedloc: self teacher frozen at epoch %d", self._epoch)

    @torch.no_grad()
    def on_train_step(self) -> None:
        """EMA update of the ``self`` teacher's classifier (a copy at the first step)."""
        if self.cam_head is None:
            return
        momentum = self.ema_momentum if int(self.ema_steps) > 0 else 0.0
        self.ema_cam_weight.mul_(momentum).add_(self.cam_head.weight.detach(), alpha=1 - momentum)
        self.ema_steps += 1

    @property
    def _teacher_frozen(self) -> bool:
        return self.teacher_backbone is not None and bool(self.teacher_ready)

    @property
    def _mil_detached(self) -> bool:
        """Whether ``loss_cls`` stops at the heads in this step (``mil_detach``)."""
        if self.mil_detach == "warmup":
            return not self.pseudo_labels_active
        return self.mil_detach == "always"

    @property
    def pseudo_labels_active(self) -> bool:
        return self.teacher_kind != "self" or self._epoch >= self.warmup_epochs

    # ---------------------------------------------------------------- forward parts

    def _heads(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """FG logits [B, h, w] and patch projections g(z) [B, d, h, w] (not normalized)."""
        fg_logits = self.fg_head(features)[:, 0].float()
        return fg_logits, self.projector(features).float()

    def _mil_logits(self, fg_logits: Tensor, projections: Tensor) -> Tensor:
        """s · cos(v, t_c) [B, C] with v the p-weighted (or plain) mean of the unit patch
        embeddings e_i = g(z_i) / |g(z_i)|."""
        cells = F.normalize(projections.flatten(2), dim=1)  # [B, d, N]
        if self.mil_pooling == "weighted":
            weights = torch.sigmoid(fg_logits).flatten(1)  # [B, N]
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
            pooled = torch.einsum("bn,bdn->bd", weights, cells)
        else:
            pooled = cells.mean(dim=2)
        pooled = F.normalize(pooled, dim=1)
        scale = self.logit_scale.clamp(max=_MAX_LOG_SCALE).exp()
        return scale * pooled @ self.text_targets[1:].T

    def teacher_maps(self, images: Tensor, labels: Tensor, features: Tensor) -> Tensor:
        """The teacher's GT-class map on the patch grid [B, h, w] (no gradient)."""
        grid = tuple(features.shape[-2:])
        if self.teacher_kind == "self":
            with torch.no_grad():
                weights = self.ema_cam_weight.flatten(1)  # [C, D]
                if self.teacher_backbone is not None:
                    features = self.teacher_backbone(images)
                    weights = self.teacher_cam_weight.flatten(1)
                if self.teacher_center:
                    weights = weights - weights.mean(dim=0, keepdim=True)
                weight = weights[labels].to(features.dtype)  # [B, D]
                return torch.einsum("bd,bdhw->bhw", weight, features.detach()).float()
        if not self._external:
            raise RuntimeError(
                f"teacher {self.teacher_kind}: call prepare_training(data) before training "
                "(wsolbench run does)"
            )
        return self._external[0].maps(images, labels, grid)

    def pseudo_labels(self, images: Tensor, labels: Tensor, features: Tensor) -> Tensor:
        """[B, h·w] int64 pseudo-labels: 1 foreground, 0 background, -1 ignored."""
        maps = self.teacher_maps(images, labels, features)
        return select_pseudo_labels(maps.flatten(1), self.fg_rule, self.fg_ratio, self.bg_ratio)

    # ---------------------------------------------------------------- the interface

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``loss_loc``, ``loss_distill``, ``loss_cls`` (+ ``loss_teacher`` for ``self``), and the
        pseudo-labelled cells per image ``pl_fg`` / ``pl_bg`` (logged, not summed)."""
        if self._random_text:
            logger.warning(
                "tedloc: training towards text targets from a random %s text tower (text=none): "
                "distinct but meaningless; pass -o text.pretrained=TAG or text.checkpoint=PATH",
                self._random_text,
            )
            self._random_text = None
        features = self.backbone(images)
        fg_logits, projections = self._heads(features)
        w = self.loss_weights
        if self._mil_detached:
            mil_logits = self._mil_logits(*self._heads(features.detach()))
        else:
            mil_logits = self._mil_logits(fg_logits, projections)
        out = {"loss_cls": w["cls"] * F.cross_entropy(mil_logits, labels)}
        # logged, not summed: how the MIL classifier and its scale are doing during training
        out["acc_mil"] = (mil_logits.argmax(dim=1) == labels).float().mean().detach() * 100
        out["logit_scale"] = self.logit_scale.detach().clamp(max=_MAX_LOG_SCALE).exp()
        if self.cam_head is not None and not self._teacher_frozen:
            # CAM's logits (mean over cells of the 1×1 classifier's map) = the classifier applied
            # to the mean feature: the same value without the [B, C, h, w] map
            pooled = (features.detach() if self.teacher_detach else features).float()
            pooled = pooled.mean(dim=(2, 3))
            cam_logits = F.linear(pooled, self.cam_head.weight.flatten(1), self.cam_head.bias)
            out["loss_teacher"] = w["teacher"] * F.cross_entropy(cam_logits, labels)
            out["acc_cam"] = (cam_logits.argmax(dim=1) == labels).float().mean().detach() * 100
        flat_fg = fg_logits.flatten(1)  # [B, N]
        if self.pseudo_labels_active:
            pseudo = self.pseudo_labels(images, labels, features)
        else:  # warm-up: no pseudo-labels yet; zero losses that keep the graph (and the logs)
            pseudo = torch.full_like(flat_fg, -1, dtype=torch.long)
        fg, bg = pseudo == 1, pseudo == 0
        out["loss_loc"] = w["loc"] * self._loc_loss(flat_fg, fg, bg)
        if self.use_distill:
            out["loss_distill"] = w["distill"] * self._distill_loss(projections, labels, pseudo)
        out["pl_fg"] = fg.sum(dim=1).float().mean().detach()
        out["pl_bg"] = bg.sum(dim=1).float().mean().detach()
        return out

    def _loc_loss(self, flat_fg: Tensor, fg: Tensor, bg: Tensor) -> Tensor:
        """BCE over pseudo-labelled cells only (masks, not indexing: no data-dependent shapes)."""
        per_cell = F.binary_cross_entropy_with_logits(flat_fg, fg.float(), reduction="none")
        fg_w, bg_w = fg.float(), bg.float()
        if not self.loc_balanced:
            return (per_cell * (fg_w + bg_w)).sum() / (fg_w.sum() + bg_w.sum()).clamp_min(1.0)
        fg_part = (per_cell * fg_w).sum() / fg_w.sum().clamp_min(1.0)
        bg_part = (per_cell * bg_w).sum() / bg_w.sum().clamp_min(1.0)
        return (fg_part + bg_part) / (
            (fg_w.sum() > 0).float() + (bg_w.sum() > 0).float()
        ).clamp_min(1)

    def _distill_loss(self, projections: Tensor, labels: Tensor, pseudo: Tensor) -> Tensor:
        """Cross-entropy of cos(e_i, targets) / τ: class y on pseudo-fg, bg on pseudo-bg cells."""
        embeddings = F.normalize(projections.flatten(2), dim=1)  # unit e_i [B, d, N]
        logits = torch.einsum("bdn,kd->bkn", embeddings, self.text_targets)
        targets = torch.where(pseudo == 1, labels[:, None] + 1, torch.zeros_like(pseudo))
        targets = torch.where(pseudo >= 0, targets, torch.full_like(pseudo, -1))
        per_cell = F.cross_entropy(
            logits / self.tau_distill, targets, ignore_index=-1, reduction="none"
        )
        return per_cell.sum() / (pseudo >= 0).sum().clamp_min(1)

    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """MIL logits [B, C] and the FG probability map [B, h, w] (``labels`` ignored)."""
        fg_logits, projections = self._heads(self.backbone(images))
        return Prediction(
            logits=self._mil_logits(fg_logits, projections), maps=torch.sigmoid(fg_logits)
        )
