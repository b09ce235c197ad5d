"""wsolbench's mmengine Runner: mmengine's, with a quiet console and the run's own device.

- **Console.** mmengine prints its environment dump, the config, the hook table and one line per
  parameter group to stdout before the first step (~150 lines), and deprecation notices after;
  they stay in the run's log file (``<work_dir>/train/<timestamp>/<timestamp>.log``), and only
  errors reach the console, where the engine's progress hook reports progress.
- **Instances.** mmengine names its logger, message hub and visualizer by the second the Runner
  starts, and a second Runner of that name in the same process reuses the first's, whose files
  are in the first run's folder (gone, if it was renamed since: reproduce renames a rerun into
  place). Each Runner here gets a name of its own.
- **Device.** mmengine moves the model to ``mmengine.device.get_device()`` — a GPU whenever the
  host has one — and loads a resumed checkpoint there, whatever the run asked for: ``--device
  cpu`` would train on the GPU, ``cuda:1`` on ``cuda:0``. Here the model goes to the run's device
  (under DDP: each rank's, its local GPU or the CPU with gloo) and checkpoints are read there.
"""

from __future__ import annotations

import itertools
import logging

import torch
from torch.nn.parallel import DistributedDataParallel

from wsolbench.util.compat import ensure_torchvision

ensure_torchvision()  # mmengine.runner imports torchvision

from mmengine.model import (  # noqa: E402
    MMDistributedDataParallel,
    is_model_wrapper,
    revert_sync_batchnorm,
)
from mmengine.registry import MODEL_WRAPPERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

# Runners started in this process: each names its mmengine instances apart (see the docstring)
_RUNNERS = itertools.count()


class HarnessRunner(Runner):
    """mmengine's Runner on ``device`` (a torch device string), its console kept for the log.

    Args:
        device: where the model trains (``cpu``, ``cuda``, ``cuda:N``); the other arguments are
            mmengine's.
    """

    def __init__(self, *args, device: str = "cpu", **kwargs):
        self.run_device = torch.device(device)  # before Runner.__init__, which wraps the model
        kwargs.setdefault("experiment_name", f"run{next(_RUNNERS)}")  # + mmengine's timestamp
        super().__init__(*args, **kwargs)

    def build_logger(self, log_level="INFO", log_file=None, **kwargs):
        built = super().build_logger(log_level, log_file, **kwargs)
        for handler in built.handlers:
            if type(handler) is logging.StreamHandler:  # the console (file handlers subclass it)
                handler.setLevel(logging.ERROR)
        return built

    def wrap_model(self, model_wrapper_cfg, model):
        """The model on the run's device; under DDP wrapped as mmengine would (its
        ``MMDistributedDataParallel`` unless the config names another wrapper), given this
        device's index on a GPU and none on the CPU."""
        if is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        model = model.to(self.run_device)
        if not self.distributed:
            return revert_sync_batchnorm(model)  # as mmengine does outside DDP
        config = dict(model_wrapper_cfg or {})
        config.setdefault("type", MMDistributedDataParallel.__name__)
        default_args = {"module": model}
        if issubclass(MODEL_WRAPPERS.get(config["type"]), DistributedDataParallel):
            on_gpu = self.run_device.type == "cuda"
            default_args["device_ids"] = [self.run_device.index or 0] if on_gpu else None
            config.setdefault("broadcast_buffers", False)
        return MODEL_WRAPPERS.build(config, default_args=default_args)

    def resume(self, filename, resume_optimizer=True, resume_param_scheduler=True, **kwargs):
        kwargs.setdefault("map_location", self.run_device)
        return super().resume(filename, resume_optimizer, resume_param_scheduler, **kwargs)
