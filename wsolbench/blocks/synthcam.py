"""``synthcam``: a finished CAM run on ``synthetic-v1``, trained by wsolbench itself, as a teacher.

TeD-Loc's pseudo-labels come from class activation maps. On the built-in synthetic protocol its
``synthetic`` preset reads them from :data:`SYNTHCAM` (``-o teacher=synthcam-v1``): the ``cam``
method's own synthetic run — its preset, seed 0, the train split and its image labels only, so
nothing a WSOL method may not see — trained once and cached as the work dir
``$WSOLBENCH_CACHE/synthcam/synthcam-v1-<digest>/`` (``config.yaml``, ``weights.pt``,
``result.json`` with the teacher's own scores). TeD-Loc then loads it exactly as it loads any
``teacher=run:<work_dir>`` (:class:`methods.tedloc.teachers.RunTeacher`), and its result names it
by the weights' sha256.

The run is ``wsolbench run --method cam --dataset synthetic --seed 0`` in a child process with one
torch thread (float reductions depend on the thread count, so the weights do not depend on the
caller's settings). The digest covers this module's settings, ``cam``'s resolved synthetic
configuration, the dataset's digest and the torch version. ``wsolbench prepare synthcam [--out
CACHE]`` builds it explicitly; otherwise it is built on first use (5 min 21 s on this 2-core
machine, one thread), into a temporary folder renamed into place only once the run has finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from wsolbench.data.synthetic import default_cache_dir
from wsolbench.util.atomic import rename_into_place

logger = logging.getLogger(__name__)

#: The name TeD-Loc's ``teacher`` key takes to get this run.
SYNTHCAM = "synthcam-v1"
#: Bump when the build changes in a way the digest's fields do not capture.
BUILD_VERSION = 1
# what a torchrun launch sets: the child is one plain process, whatever its parent is
_LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


class SynthCamError(ValueError):
    """synthcam-v1 could not be built here (the message says why and what to do)."""


@dataclass(frozen=True)
class SynthCamConfig:
    """Everything that decides the teacher's weights.

    Attributes:
        seed: the run's ``--seed``.
        threads: torch intra-op threads of the run (fixed: reductions depend on it).
        overrides: extra ``-o KEY=VALUE`` for ``cam`` (none for ``synthcam-v1`` itself; the tests
            use a tiny one).
    """

    seed: int = 0
    threads: int = 1
    overrides: tuple[str, ...] = ()

    def digest(self) -> str:
        """12 hex digits over the fields, ``cam``'s resolved config, the data and torch."""
        import torch

        from wsolbench.config import resolve_config
        from wsolbench.data.synthetic import SyntheticConfig
        from wsolbench.registry import get_method

        payload = {
            "config": asdict(self),
            "build_version": BUILD_VERSION,
            "cam": resolve_config(get_method("cam"), "synthetic", list(self.overrides)),
            "data": SyntheticConfig().digest(),
            "torch": torch.__version__.split("+")[0],
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


#: What ``synthcam-v1`` is.
DEFAULT_CONFIG = SynthCamConfig()


def run_dir(config: SynthCamConfig | None = None, cache_dir=None) -> Path:
    """``<cache>/synthcam/synthcam-v1-<digest>`` (whether or not it exists yet)."""
    config = config or DEFAULT_CONFIG
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / "synthcam" / f"{SYNTHCAM}-{config.digest()}"


def ensure_synthcam(config: SynthCamConfig | None = None, cache_dir=None) -> Path:
    """The cached run folder of ``config``, trained now if it is not there yet.

    Returns:
        A finished ``cam`` work dir (``config.yaml``, ``weights.pt``, ``result.json``).

    Raises:
        SynthCamError: the child run failed (its output went to the terminal; nothing is cached),
            or this is one rank of several (build it first with ``wsolbench prepare synthcam``).
    """
    config = config or DEFAULT_CONFIG
    final = run_dir(config, cache_dir)
    if (final / "weights.pt").is_file():
        return final
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # N ranks would each train it
        raise SynthCamError(
            f"{SYNTHCAM} is not in {final.parent} yet; build it once before a distributed run: "
            "wsolbench prepare synthcam"
        )
    cache = final.parents[1]
    logger.warning(
        "building %s once (the cam method's synthetic run, seed %d, one torch thread: TeD-Loc's "
        "teacher on synthetic; about 5 minutes on 2 CPU cores); cached as %s",
        SYNTHCAM,
        config.seed,
        final,
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    argv = [sys.executable, "-m", "wsolbench", "run", "--method", "cam", "--dataset", "synthetic"]
    # on the CPU wherever it is built (a GPU's kernels give other weights)
    argv += ["--protocol", "synthetic-v1", "--device", "cpu"]
    argv += ["--seed", str(config.seed), "--threads", str(config.threads), "--work-dir", str(work)]
    for override in config.overrides:
        argv += ["-o", override]
    threads = str(config.threads)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARIABLES}
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, WSOLBENCH_CACHE=str(cache))
    try:
        # the child's progress goes to the terminal as it comes (a run of minutes must show it)
        status = subprocess.call(argv, env=env)
        if status != 0 or not (work / "weights.pt").is_file():
            raise SynthCamError(
                f"building {SYNTHCAM} failed (exit {status} of {' '.join(argv[1:])}; its output "
                "is above); nothing was cached, the next run tries again"
            )
    except BaseException:  # failed or interrupted: nothing half-built stays
        shutil.rmtree(work, ignore_errors=True)
        raise
    rename_into_place(work, final)  # whole or not at all (another process's copy: the same run)
    return final


def prepare_synthcam(cache_dir=None, seed: int = 0) -> str:
    """``wsolbench prepare synthcam``: build (or find) the run in ``cache_dir``; returns what to
    print — where it is, its scores, and how runs find it."""
    from dataclasses import replace

    config = replace(DEFAULT_CONFIG, seed=int(seed))
    folder = ensure_synthcam(config, cache_dir)
    lines = [f"{SYNTHCAM} (cam, seed {config.seed}) is {folder}"]
    if config != DEFAULT_CONFIG:
        lines.append(f"not {SYNTHCAM} itself: use it with -o teacher=run:{folder}")
    elif run_dir(config) != folder:
        lines.append(
            f"runs use it when WSOLBENCH_CACHE={Path(cache_dir).expanduser()}, or with "
            f"-o teacher=run:{folder}"
        )
    return "\n".join(lines)
