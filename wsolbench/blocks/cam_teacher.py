"""The CAM teacher: a finished ``cam`` run on a student's own data, trained once and cached.

TeD-Loc's pseudo-labels come from class activation maps. Its default teacher (``teacher: cam``, on
every dataset) is the ``cam`` method's run on the very data the student trains on: the same
dataset, protocol (by hash) and data (by fingerprint), ``cam``'s preset for that dataset (on cub
and ilsvrc its pretrained backbone), seed 0, the train split's image labels only — nothing a WSOL
method may not see. It is built on first use by ``wsolbench run --method cam`` in a child process
and cached as the work dir ``$WSOLBENCH_CACHE/cam-teacher/<name>-<digest>/`` (``config.yaml``,
``weights.pt``, ``result.json`` with the teacher's own scores), where ``<name>`` is
:data:`SYNTHCAM` (``synthcam-v1``) for the built-in ``synthetic-v1`` world and
``cam-<protocol id>`` otherwise. The student loads it as any ``teacher=run:<work_dir>``
(:class:`methods.tedloc.teachers.RunTeacher`); its result names it by the weights' sha256.

The digest covers :class:`CamTeacherConfig`, ``cam``'s resolved configuration for the dataset,
the protocol's hash, the data fingerprint, the device kind and the torch version: two students on
different data never share a teacher. On the CPU the run has one torch thread (float reductions
depend on the thread count, so the weights do not depend on the caller's settings). It is trained
in ``.<entry>.partial``, one build at a time, and renamed into place only once the run has
finished: an interrupted build resumes there next time, a failed one is removed. An entry whose
``result.json`` is not the run its name says (placed by hand, edited) is refused when read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from wsolbench.method import TrainingData
from wsolbench.results.per_image import PER_IMAGE_FILE
from wsolbench.results.record import RESULT_FILENAME
from wsolbench.results.workdir import RECORD_FILE, WEIGHTS_FILE, WorkDirError, locked
from wsolbench.util.atomic import build_lock, building_folder, rename_into_place
from wsolbench.util.cache import default_cache_dir

logger = logging.getLogger(__name__)

#: The name of the teacher of the built-in synthetic world (``synthetic-v1``): its cache entry,
#: and a ``teacher`` value that is this case only (the board's runs were recorded with it).
SYNTHCAM = "synthcam-v1"
SYNTHETIC_PROTOCOL = "synthetic-v1"
#: Bump when the build changes in a way the digest's fields do not capture.
BUILD_VERSION = 2
#: measured: cam's synthetic-v1 schedule, one thread on this project's 2-core machine
SYNTHCAM_MINUTES = 5
# what a torchrun launch sets: the child is one plain process, whatever its parent is
_LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


class CamTeacherError(ValueError):
    """The CAM teacher could not be built here (the message says why and what to do)."""


@dataclass(frozen=True)
class CamTeacherConfig:
    """What decides the teacher's weights besides the data.

    Attributes:
        seed: the run's ``--seed``.
        threads: torch intra-op threads of the run on the CPU (fixed: reductions depend on it).
        overrides: extra ``-o KEY=VALUE`` for ``cam`` (none by default; the tests use a tiny one).
    """

    seed: int = 0
    threads: int = 1
    overrides: tuple[str, ...] = ()


#: What TeD-Loc's ``cam`` teacher is.
DEFAULT_CONFIG = CamTeacherConfig()


def teacher_name(data: TrainingData) -> str:
    """``synthcam-v1`` for the built-in synthetic world, else ``cam-<protocol id>``."""
    return SYNTHCAM if data.protocol_id == SYNTHETIC_PROTOCOL else f"cam-{data.protocol_id}"


def digest(data: TrainingData, config: CamTeacherConfig | None = None) -> str:
    """12 hex digits over the config, ``cam``'s resolved config, the protocol, the data, the
    device kind and torch."""
    import torch

    from wsolbench.config import resolve_config
    from wsolbench.registry import get_method

    config = config or DEFAULT_CONFIG
    payload = {
        "config": asdict(config),
        "build_version": BUILD_VERSION,
        "cam": resolve_config(get_method("cam"), data.dataset, list(config.overrides)),
        "protocol": data.protocol_hash,
        "data": data.data_fingerprint,
        "device": _device_kind(data.device),
        "torch": torch.__version__.split("+")[0],
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_dir(data: TrainingData, config: CamTeacherConfig | None = None, cache_dir=None) -> Path:
    """``<cache>/cam-teacher/<name>-<digest>`` (whether or not it exists yet)."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / "cam-teacher" / f"{teacher_name(data)}-{digest(data, config)}"


def ensure_cam_teacher(
    data: TrainingData, config: CamTeacherConfig | None = None, cache_dir=None
) -> Path:
    """The cached teacher run of ``data``, trained now if it is not there yet.

    Returns:
        A finished ``cam`` work dir (``config.yaml``, ``weights.pt``, ``result.json``).

    Raises:
        CamTeacherError: the child run failed (its output went to the terminal; nothing is
            cached), or this is one rank of several (the message gives the command to build it).
    """
    config = config or DEFAULT_CONFIG
    final = run_dir(data, config, cache_dir)
    if (final / WEIGHTS_FILE).is_file():
        _check_entry(final, data, config)
        return final
    argv = _cam_argv(data, config)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # N ranks would each train it
        raise CamTeacherError(
            f"TeD-Loc's cam teacher ({teacher_name(data)}) is not in {final.parent} yet, and a "
            "distributed run cannot build it: train it once, "
            f"`wsolbench {shlex.join(argv)} --work-dir DIR`, then pass -o teacher=run:DIR"
        )
    logger.warning(
        "building TeD-Loc's cam teacher %s once (%s); cached as %s",
        teacher_name(data),
        _expected_time(data, config),
        final,
    )
    with build_lock(final):
        if (final / WEIGHTS_FILE).is_file():  # built by the process we waited for
            _check_entry(final, data, config)
            return final
        _build(final, data, config, argv)
    return final


def _build(final: Path, data: TrainingData, config: CamTeacherConfig, argv: list[str]) -> None:
    """Run the teacher in ``.<final>.partial`` and rename it to ``final`` when finished. It is a
    whole cam run (hours on CUB): an interrupted build keeps its checkpoints and the next one
    resumes them (``--resume`` refuses a partial of other settings: the build then fails, and
    that partial is removed); a failed one leaves nothing."""
    work = final.parent / f".{final.name}.partial"
    command = [sys.executable, "-m", "wsolbench", *argv, "--work-dir", str(work), "--resume"]
    threads = str(config.threads)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARIABLES}
    env.update(WSOLBENCH_CACHE=str(final.parents[1]))
    if _device_kind(data.device) == "cpu":
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    started = time.monotonic()
    try:
        # the child's progress goes to the terminal as it comes (a run of minutes must show it)
        status = subprocess.call(command, env=env)
        if status != 0 or not (work / WEIGHTS_FILE).is_file():
            raise CamTeacherError(
                f"building the cam teacher {teacher_name(data)} failed (exit {status} of "
                f"wsolbench {shlex.join(argv)}; its output is above); nothing was cached, the next "
                "run tries again"
            )
        _check_same_data(work, data)
    except Exception:  # failed (not interrupted): nothing half-built stays
        _remove_unless_in_use(work)
        raise
    rename_into_place(work, final)  # whole or not at all
    logger.warning("cam teacher %s built in %.0f s", teacher_name(data), time.monotonic() - started)


def _remove_unless_in_use(work: Path) -> None:
    """Remove a failed build's work dir, unless a process still works in it: the child of a
    build whose parent was killed alone runs on there, and that folder is its progress."""
    try:
        with locked(work):
            shutil.rmtree(work, ignore_errors=True)
    except WorkDirError:
        logger.warning("left %s as it is: another process is still building there", work)


def _cam_argv(data: TrainingData, config: CamTeacherConfig) -> list[str]:
    """The ``wsolbench`` command line of the teacher's run (without ``--work-dir``)."""
    argv = ["run", "--method", "cam", "--dataset", data.dataset, "--protocol", data.protocol]
    argv += ["--data-root", str(data.data_root), "--seed", str(config.seed)]
    # the device kind, not the caller's GPU index (the child sees the caller's visible GPUs)
    argv += ["--device", _device_kind(data.device)]
    if _device_kind(data.device) == "cpu":
        argv += ["--threads", str(config.threads)]
    for override in config.overrides:
        argv += ["-o", override]
    return argv


def adopt_run(
    folder: str | Path, data: TrainingData, config: CamTeacherConfig | None = None, cache_dir=None
) -> Path:
    """Make a finished ``cam`` run the cached teacher of ``data``, when it is exactly the run the
    build would make (so that nothing trains that network twice, e.g. the board's ``cam`` run of
    seed 0 with one thread): the same dataset, protocol, data, config, seed, thread count, device
    kind and torch.
    Its record, weights and per-image records are copied (not its checkpoints).

    Returns:
        The cache entry (left as it is when it already exists).

    Raises:
        CamTeacherError: the run is not finished, or differs (the message names each field).
    """
    config = config or DEFAULT_CONFIG
    folder = Path(folder)
    final = run_dir(data, config, cache_dir)
    if (final / WEIGHTS_FILE).is_file():
        return final
    try:
        result = json.loads((folder / RESULT_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CamTeacherError(f"{folder} holds no finished run (no readable result.json)") from None
    differ = _differences(result, data, config, exact_torch=True)
    if differ or not (folder / WEIGHTS_FILE).is_file():
        argv = shlex.join(_cam_argv(data, config))
        older = (result.get("data_fingerprint") or {}).get("version") == 1
        why = (
            " (made before mask files were fingerprinted)"
            if older and "data fingerprint" in differ
            else ""
        )
        raise CamTeacherError(
            f"{folder} is not the run the cam teacher {teacher_name(data)} would be "
            f"({', '.join(differ) or 'no weights.pt'} differ{why}); its run is `wsolbench {argv}`"
        )
    with build_lock(final):
        if (final / WEIGHTS_FILE).is_file():  # built meanwhile by the process this one waited for
            return final
        with building_folder(final) as work:
            for name in (RECORD_FILE, WEIGHTS_FILE, RESULT_FILENAME, PER_IMAGE_FILE):
                if (folder / name).is_file():
                    shutil.copy2(folder / name, work / name)
            rename_into_place(work, final)
    return final


def _differences(
    result: dict, data: TrainingData, config: CamTeacherConfig, *, exact_torch: bool
) -> list[str]:
    """The fields in which a finished run's ``result.json`` is not the run the teacher's build
    would make: dataset, protocol, data, config, seed, device kind, torch (its whole version, or
    the release the digest names), and on the CPU the thread count."""
    import torch

    from wsolbench.config import resolve_config
    from wsolbench.registry import get_method

    def release(version) -> str:
        return str(version) if exact_torch else str(version).split("+")[0]

    env = result.get("env", {})
    expected = {
        "method": "cam",
        "dataset": data.dataset,
        "protocol_hash": data.protocol_hash,
        "data fingerprint": data.data_fingerprint,
        "seed": config.seed,
        "config": resolve_config(get_method("cam"), data.dataset, list(config.overrides)),
        "device": _device_kind(data.device),
        "torch": release(torch.__version__),
    }
    found = {
        "method": result.get("method"),
        "dataset": result.get("dataset"),
        "protocol_hash": result.get("protocol_hash"),
        "data fingerprint": (result.get("data_fingerprint") or {}).get("sha256"),
        "seed": result.get("seed"),
        "config": result.get("config"),
        "device": _device_kind(env.get("device", "")),
        "torch": release(env.get("torch")),
    }
    if expected["device"] == "cpu":
        expected["threads"], found["threads"] = config.threads, env.get("torch_threads")
    return [key for key in expected if found[key] != expected[key]]


def _check_entry(final: Path, data: TrainingData, config: CamTeacherConfig) -> None:
    """A cache entry is the run its name (a digest) says, or nothing may teach from it."""
    try:
        result = json.loads((final / RESULT_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = {}
    differ = _differences(result, data, config, exact_torch=False)
    if differ:
        raise CamTeacherError(
            f"{final} is named as the cam teacher {teacher_name(data)} but holds another run "
            f"({', '.join(differ)} differ): delete it, and it is rebuilt"
        )


def _check_same_data(work: Path, data: TrainingData) -> None:
    """The child read the student's data (same fingerprint), or nothing is cached."""
    record = json.loads((work / RESULT_FILENAME).read_text(encoding="utf-8"))
    found = (record.get("data_fingerprint") or {}).get("sha256")
    if found != data.data_fingerprint:
        raise CamTeacherError(
            f"the cam teacher's run read data {str(found)[:12]}, the student's is "
            f"{data.data_fingerprint[:12]} (did {data.data_root} change meanwhile?); nothing was "
            "cached"
        )


def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def _expected_time(data: TrainingData, config: CamTeacherConfig) -> str:
    """What the first-use message says about how long the build takes."""
    from wsolbench.config import resolve_config
    from wsolbench.registry import get_method

    cam = resolve_config(get_method("cam"), data.dataset, list(config.overrides))
    schedule = f"cam's {data.dataset} schedule: {cam['train']['max_epochs']} epochs"
    measured = config == CamTeacherConfig(seed=config.seed)  # synthcam-v1's own settings
    if data.protocol_id == SYNTHETIC_PROTOCOL and _device_kind(data.device) == "cpu" and measured:
        schedule += f", about {SYNTHCAM_MINUTES} minutes on 2 CPU cores with one thread"
    else:
        schedule += " (as long as `wsolbench run --method cam` on this data)"
    return schedule


def prepare_synthcam(cache_dir=None, seed: int = 0, adopt: Path | None = None) -> str:
    """``wsolbench prepare synthcam [--from RUN]``: build (or find, or adopt the finished ``cam``
    run ``adopt``) the teacher of ``synthetic-v1`` on the CPU in ``cache_dir``; returns what to
    print — where it is and how runs find it."""
    from dataclasses import replace

    data = synthetic_training_data()
    config = replace(DEFAULT_CONFIG, seed=int(seed))
    if adopt is not None:
        folder = adopt_run(adopt, data, config, cache_dir)
        lines = [f"{SYNTHCAM} (cam, seed {config.seed}) is {folder}, the run of {adopt}"]
    else:
        folder = ensure_cam_teacher(data, config, cache_dir)
        lines = [f"{SYNTHCAM} (cam, seed {config.seed}) is {folder}"]
    if config != DEFAULT_CONFIG:
        lines.append(f"not {SYNTHCAM} itself: use it with -o teacher=run:{folder}")
    elif run_dir(data, config) != folder:
        lines.append(
            f"runs use it when WSOLBENCH_CACHE={Path(cache_dir).expanduser()}, or with "
            f"-o teacher=run:{folder}"
        )
    return "\n".join(lines)


def synthetic_training_data() -> TrainingData:
    """What a TeD-Loc run on ``synthetic-v1`` (generated on first use) trains on, on the CPU."""
    from wsolbench.data.sources import read_data
    from wsolbench.protocol import load_protocol

    protocol = load_protocol(SYNTHETIC_PROTOCOL)
    root, _, fingerprint = read_data("synthetic", None, protocol, trains=True, check_files=False)
    return TrainingData(
        dataset="synthetic",
        protocol=SYNTHETIC_PROTOCOL,
        protocol_id=protocol.id,
        protocol_hash=protocol.hash,
        data_root=root,
        data_fingerprint=fingerprint["sha256"],
        device="cpu",
    )
