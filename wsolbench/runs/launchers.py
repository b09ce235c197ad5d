"""How the ranks of one run join: ``--launcher none | pytorch | slurm``.

The ranks are started by an existing engine, never by wsolbench: ``torchrun`` (``pytorch``) or
``srun`` (``slurm``: the tasks of one job step, e.g. ``wsolbench sweep --executor slurm
--gpus-per-cell N``). Each joins the process group through mmengine's launcher on GPUs.
"""

from __future__ import annotations

import os
import subprocess

LAUNCHERS = ("none", "pytorch", "slurm")
SLURM_TASK_VARIABLES = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST")


class LaunchError(ValueError):
    """The run was asked for a launcher its environment does not provide; the message says how."""


def launch_rank(launcher: str) -> int:
    """This process's rank as its launcher numbered it, before it joins the group (0 alone)."""
    variable = {"pytorch": "RANK", "slurm": "SLURM_PROCID"}.get(launcher)
    return int(os.environ.get(variable, "0")) if variable else 0


def join_ranks(launcher: str, device: str) -> tuple[int, int]:
    """Join the process group of this run's ranks: (rank, world).

    ``pytorch``: the ranks ``torchrun`` started. ``slurm``: the tasks of one SLURM job step
    (``srun``), through mmengine's SLURM launcher on GPUs; on CPU, the same environment
    (``SLURM_PROCID``, ``SLURM_NTASKS``) with gloo, since mmengine's binds each task to a GPU.
    """
    if launcher == "none":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise LaunchError(
                f"this process is one of {os.environ['WORLD_SIZE']} started by torchrun, but "
                "--launcher is none (each would train alone into the same work dir); pass "
                "--launcher pytorch"
            )
        return 0, 1
    if launcher not in LAUNCHERS:
        raise LaunchError(f"--launcher {launcher!r}: use one of {', '.join(LAUNCHERS)}")
    from mmengine.dist import get_dist_info, init_dist, is_distributed

    if launcher == "pytorch" and "RANK" not in os.environ:
        raise LaunchError(
            "--launcher pytorch needs torchrun: torchrun --nproc-per-node N -m wsolbench ..."
        )
    if launcher == "slurm":
        missing = [name for name in SLURM_TASK_VARIABLES if name not in os.environ]
        if missing:
            raise LaunchError(
                f"--launcher slurm runs as the tasks of a SLURM job step, but {', '.join(missing)} "
                "is not set: start it with srun --ntasks N, or `wsolbench sweep --executor slurm "
                "--gpus-per-cell N`"
            )
    if not is_distributed():
        if device.startswith("cuda"):
            init_dist(launcher, backend="nccl")  # also binds each rank to its GPU
        else:
            _init_gloo(launcher)
    return get_dist_info()


def _init_gloo(launcher: str) -> None:
    """A CPU process group (mmengine's ``init_dist`` assumes a GPU). Under SLURM, the rendezvous
    is the job step's first host (``MASTER_ADDR`` when set, as mmengine reads it)."""
    from torch import distributed

    if launcher == "slurm":
        if "MASTER_ADDR" not in os.environ:
            os.environ["MASTER_ADDR"] = _first_host(os.environ["SLURM_NODELIST"])
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", os.environ["SLURM_PROCID"])
    distributed.init_process_group("gloo")


def _first_host(node_list: str) -> str:
    """The first host of a SLURM node list (``node[01-04]`` -> ``node01``), as ``scontrol`` expands
    it; this host alone when there is no ``scontrol`` (a one-node step)."""
    try:
        hosts = subprocess.run(
            ["scontrol", "show", "hostnames", node_list], capture_output=True, text=True
        ).stdout.split()
    except OSError:
        hosts = []
    return hosts[0] if hosts else "127.0.0.1"
