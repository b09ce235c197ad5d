"""The method interface: :class:`WSOLMethod` (what a method declares and implements),
:class:`Prediction`, :class:`Capabilities`, :class:`MethodConfig`, and :func:`build_method`.

A method learns (:meth:`WSOLMethod.loss`) and predicts (:meth:`WSOLMethod.predict`); the harness
does everything else (resizing and normalizing maps, thresholds, boxes, counting), so no method can
drift from the protocol. How a config is resolved and ``-o`` overrides typed is
:mod:`wsolbench.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from wsolbench.config import ConfigError


@dataclass
class Prediction:
    """What a method predicts for a batch.

    Attributes:
        logits: [B, K] class scores, any range; None when the method cannot classify (then Top-k
            Loc and classification metrics are absent from its results).
        maps: [B, h, w] localization map for the given target class, any size, any range; the
            harness resizes it to the protocol size (bicubic) and min-max normalizes it.
    """

    logits: Tensor | None
    maps: Tensor


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Capabilities:
    """What a method needs from the harness beyond ``loss`` and ``predict``, and what its results
    say of it, declared once per class; every field is optional (the defaults describe a
    trainable method).

    Attributes:
        trainable: False for a training-free method (it never touches the training engine).
        needs_grad_at_inference: ``predict`` needs autograd (Grad-CAM); the evaluator runs it with
            gradients on and frees them after each batch.
        needs_classnames: the constructor takes ``classnames`` (the protocol's class names, in
            class order), e.g. to embed them with a text encoder.
        pretrained_options: the dotted config keys ``--no-pretrained`` sets to false
            (``("backbone.pretrained",)``), or to the value an entry spells out as ``key=value``
            (TeD-Loc's ``"teacher=self"``: no teacher trained before the run).
        seed_independent: with its pretrained weights loaded, the method's maps and logits do not
            depend on the seed (a training-free method that draws nothing at random). A run of
            it stands for every seed: tables show it once, with ``any`` seeds, instead of
            identical copies counted as seeds. A run without its weights (``pretrained: none``:
            a tower initialised from the seed) is seed-dependent whatever this says.
        reference: one short sentence: what the method's default computes relative to the paper
            it is named after, and which code it was checked against, or that there is none
            (``"reconstructed from TeD-Loc's paper (arXiv 2501.12632); no public code to check it
            against"``). Every result records it and tables print it as a note on the method's
            rows, so that a row named after a paper says how far it is that paper's method.
    """

    trainable: bool = True
    needs_grad_at_inference: bool = False
    needs_classnames: bool = False
    pretrained_options: tuple[str, ...] = ()
    seed_independent: bool = False
    reference: str = ""


@dataclass(frozen=True)
class MethodConfig:
    """A method's configuration, declared once.

    Attributes:
        defaults: the constructor's keywords with their default values — the only place defaults
            live (constructors take them without defaults of their own) — plus, for a trainable
            method, a ``train`` section over :data:`TRAIN_DEFAULTS`.
        presets: per dataset (``"cub"``, ``"ilsvrc"``, ``"synthetic"``), overrides of ``defaults``.
        types: dotted key → the type(s) an ``-o`` value must have, where defaults and presets
            cannot tell (``{"clip.pretrained": (str, bool)}``); ``*`` matches one part. Every other
            key takes the types its default and presets have.
        choices: dotted key → the values it may take (``{"pooling": ("mean", "max")}``).
    """

    defaults: dict = field(default_factory=dict)
    presets: dict[str, dict] = field(default_factory=dict)
    types: dict[str, type | tuple[type, ...]] = field(default_factory=dict)
    choices: dict[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingData:
    """The data a run trains on, as :meth:`WSOLMethod.prepare_training` sees it (a teacher that is
    itself trained, e.g. TeD-Loc's ``cam`` teacher, must train on the very same).

    Attributes:
        dataset: the dataset's name (``cub``).
        protocol: what ``wsolbench run --protocol`` takes to get this protocol (an id or a file).
        protocol_id, protocol_hash: the protocol's id and content hash.
        data_root: the prepared data root the run reads.
        data_fingerprint: sha256 of every split's records (:mod:`wsolbench.data.fingerprint`).
        device: the run's device (``cpu``, ``cuda``, ``cuda:1``).
    """

    dataset: str
    protocol: str
    protocol_id: str
    protocol_hash: str
    data_root: Path
    data_fingerprint: str
    device: str


class WSOLMethod(nn.Module):
    """Base class of every method. Register a subclass with ``@register_method("name")``.

    What a method declares (``docs/writing-a-method.md`` walks through it):

    - ``config``: a :class:`MethodConfig` — defaults, presets, types (one declaration; the
      constructor takes ``num_classes`` plus the top-level keys of the defaults, without defaults
      of its own);
    - ``capabilities``: a :class:`Capabilities`, when it differs from the default;
    - ``loss`` (unless ``capabilities.trainable`` is False) and ``predict``;
    - ``self.provenance[part] = source`` for each pretrained part it loads (a backbone's weights,
      a text tower, a teacher run): results and tables show it, ``--resume`` checks it; and
      ``self.input_runs[part]`` for a part loaded from another finished run
      (:func:`wsolbench.runs.rebuild.input_run` of its folder), which the result embeds so that
      ``reproduce`` can rebuild that run on a machine without its folder;
    - its input, when not the default: ``self.image_mean`` / ``self.image_std`` (RGB in [0, 1],
      ImageNet's by default; may follow the loaded weights) and ``self.native_input`` (True:
      ``predict`` sees each image at its own size, one per batch, not the protocol size);
    - ``self.unused_parameters = True`` when some parameters stop taking part in the loss during
      training (DDP must then be told);
    - optionally ``on_train_epoch`` / ``on_train_step`` (warm-ups, EMA) and
      ``inference_state_dict`` (to leave training-only parts out of ``weights.pt``).

    ``name`` is set by the registry, which refuses a class still declaring an attribute of the
    first interface (``trainable = False``, ``defaults = {...}``, ...): each is now a field of
    ``capabilities`` or ``config``.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    config: ClassVar[MethodConfig] = MethodConfig()
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    native_input: bool = False
    # True when some trainable parameters stop taking part in the loss during training (a frozen
    # teacher's head): distributed training then has DDP look for them at every step (slower)
    # instead of failing at the first step without their gradients
    unused_parameters: bool = False

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        # part -> where its weights came from ("file:...", "cache:...", "run:...", "none")
        self.provenance: dict[str, str] = {}
        # part -> what rebuilds the finished run it was loaded from (a run: teacher)
        self.input_runs: dict[str, dict] = {}

    @property
    def pretrained(self) -> str:
        """What pretrained weights were loaded, from :attr:`provenance`; in every result.

        One part: its source. Several: ``part=source; ...``. ``"none"`` when every part was
        randomly initialised (tables mark it), and for a method with parameters and no declared
        part; ``"n/a"`` for a parameter-free one such as ``center``, which has no weights to load.
        """
        parts = {k: v for k, v in self.provenance.items() if v}
        if not parts:
            return "none" if any(True for _ in self.parameters()) else "n/a"
        if all(v == "none" for v in parts.values()):
            return "none"
        if len(parts) == 1:
            return next(iter(parts.values()))
        return "; ".join(f"{part}={source}" for part, source in parts.items())

    def prepare_training(self, data: TrainingData) -> None:
        """Called by ``wsolbench run`` before training (and before the result's ``pretrained`` is
        read) with the data it trains on: build what only training needs, such as a frozen
        teacher, and record its source in :attr:`provenance`. Inference, cost and rebuilds from
        weights never call it."""

    def on_train_epoch(self, epoch: int, max_epochs: int) -> None:
        """Called by the training engine before each training epoch (0-based ``epoch``), also
        after a resume. Methods whose training depends on the epoch (warm-ups) override it."""

    def on_train_step(self) -> None:
        """Called by the training engine after each optimizer step (e.g. an EMA update). State it
        keeps must live in buffers, so that checkpoints carry it and ``--resume`` stays exact;
        leave such training-only state out of :meth:`inference_state_dict`."""

    def inference_state_dict(self) -> dict[str, Tensor]:
        """What inference needs, exported as ``weights.pt``; methods with training-only parts
        (a teacher, a text tower) leave them out here."""
        return self.state_dict()

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Training losses for a batch.

        Args:
            images: [B, 3, H, W], normalized with ``image_mean`` / ``image_std``.
            labels: [B] int64 class indices.

        Returns:
            Scalars named ``loss_*`` (the engine sums them and logs each). Other keys, whose names
            must not contain "loss", are scalar statistics the engine logs without summing
            (e.g. TeD-Loc's per-batch pseudo-label counts).
        """
        raise NotImplementedError(
            f"{type(self).__name__} implements no loss(); a training-free method declares "
            "capabilities = Capabilities(trainable=False)"
        )

    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Class scores and the localization map of the target class ``labels`` (the GT class).

        Args:
            images: [B, 3, H, W], normalized with ``image_mean`` / ``image_std``.
            labels: [B] int64; class-agnostic methods ignore them.
        """
        raise NotImplementedError


def build_method(
    method: type[WSOLMethod],
    config: dict,
    num_classes: int,
    seed: int = 0,
    classnames: tuple[str, ...] | list[str] | None = None,
) -> WSOLMethod:
    """Instantiate a method from a resolved config (the ``train`` section is left to the engine).

    The seed is set first, so that randomly initialised weights are reproducible. A method with
    ``capabilities.needs_classnames`` also gets ``classnames`` (``"class 0"``, ... when none are
    known).
    """
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in config.items() if k != "train"}
    if method.capabilities.needs_classnames:
        names = list(classnames) if classnames else [f"class {i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ConfigError(
                f"method {method.name!r}: {len(names)} class names for {num_classes} classes"
            )
        kwargs["classnames"] = names
    try:
        return method(num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"method {method.name!r} rejected its config {kwargs}: {exc}") from exc
