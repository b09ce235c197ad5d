"""TeD-Loc's configuration: every key's default and the per-dataset presets.

``methods/tedloc/README.md`` says what each key means and why each preset value is what it is;
the method (:mod:`methods.tedloc.method`) validates the values.
"""

from wsolbench.blocks import synthclip
from wsolbench.blocks.cam_teacher import SYNTHCAM
from wsolbench.blocks.clip_text import BACKGROUND_TEMPLATE, BACKGROUND_WORDS
from wsolbench.data.synthetic import captions as synthetic_captions

MIL_DETACH = ("never", "warmup", "always")
SELF_TEACHERS = ("live", "frozen")
#: the teacher values besides run:<work_dir> (README.md: what each is)
TEACHERS = ("cam", "self", "clip", SYNTHCAM)


#: every config key's default (methods/tedloc/README.md: what each means)
DEFAULTS = {
    "backbone": {
        "name": "deit_small_patch16_224",
        "pretrained": True,
        "checkpoint": None,
        "clip_tag": "openai",
        "kwargs": {},
    },
    "text": {
        "model": "ViT-B-16",
        "pretrained": "openai",
        "checkpoint": None,
        "templates": ["a photo of a {}.", "a photo of the {}.", "a close-up photo of a {}."],
        "background_words": list(BACKGROUND_WORDS),
        "background_template": BACKGROUND_TEMPLATE,
        "seed": 0,
        "cache_dir": None,
    },
    "orthogonalize": "qr",
    "qr_group_size": None,
    "proj_hidden": None,
    "fg_head": {"hidden": 0, "kernel": 1},
    # pseudo-labels from a finished cam run on the same data (built on first use, cached;
    # README.md: why not `self`)
    "teacher": "cam",
    "warmup_epochs": 5,
    "ema_momentum": 0.99,
    "self_teacher": "live",
    "teacher_center": False,
    "teacher_detach": False,
    "fg_rule": "otsu",
    "fg_ratio": 0.2,
    "bg_ratio": 0.5,
    "tau_distill": 0.07,
    "logit_scale_init": 1 / 0.07,
    "use_distill": True,
    "mil_pooling": "weighted",
    "mil_detach": "never",
    "loc_balanced": False,
    "loss_weights": {"loc": 1.0, "distill": 1.0, "cls": 1.0, "teacher": 1.0},
    "train": {
        "max_epochs": 50,
        "optimizer": {"nesterov": False},  # SGD, momentum 0.9, wd 1e-4, lr 0.01 (heads)
        # backbone lr 0.001; the logit scale moves slowly (a fast one collapses to ~0 while
        # the cosine logits are still random, and the MIL classifier then never learns)
        "lr_mult": {"backbone": 0.1, "logit_scale": 0.1},
        "scheduler": {"type": "CosineAnnealingLR", "eta_min": 0.0},
    },
}
#: per-dataset overrides of DEFAULTS
PRESETS = {
    "cub": {
        "text": {"templates": ["a photo of a {}, a type of bird.", "a photo of the {}."]},
    },
    "ilsvrc": {
        # C + 1 = 1001 > d = 512: qr falls back to none (with a warning); qr_groups is the
        # option that still orthogonalizes similar classes
        "warmup_epochs": 1,
        "train": {"max_epochs": 10},
    },
    # From scratch on 2 CPU cores, the same backbone and budget as cam's synthetic preset
    # (README.md: why these values).
    "synthetic": {
        "backbone": {"name": "wsolcnn", "pretrained": False},
        # text targets from synthclip-v1 (wsolbench/blocks/synthclip.py, built on first use),
        # loaded as a user's CLIP file is; prompts in its captions' words
        "text": {
            "model": synthclip.MODEL,
            "pretrained": True,
            "checkpoint": synthclip.SYNTHCLIP,
            "templates": list(synthclip.PROMPT_TEMPLATES),
            "background_words": list(synthetic_captions.BACKGROUND_WORDS),
            "background_template": synthetic_captions.BACKGROUND_TEMPLATE,
        },
        "warmup_epochs": 8,  # these two serve -o teacher=self
        "ema_momentum": 0.9,
        "train": {
            "max_epochs": 28,
            "num_workers": 0,
            "optimizer": {"lr": 0.1},
            # from scratch the backbone learns at CAM's lr 0.1; the projection into the
            # scaled cosine space needs 0.01 (at 0.1 its loss diverged in a 15-step probe)
            "lr_mult": {"backbone": 1.0, "projector": 0.1, "logit_scale": 0.01},
            "augment": {"crop_scale": [1.0, 1.0], "hflip": True},
        },
    },
}
# The histology world: synthetic's student and schedule; no CLIP has seen that world, so the
# text targets come from seeded random towers of synthclip's architecture (recorded as such)
PRESETS["synthetic-histo"] = {
    **PRESETS["synthetic"],
    "text": {
        "model": synthclip.MODEL,
        "pretrained": False,
        "checkpoint": None,
        "templates": ["a photo of {} tissue.", "{} glands."],
        "background_words": ["stroma", "connective tissue", "blood vessel", "fat"],
        "background_template": "a photo of {}.",
    },
}
