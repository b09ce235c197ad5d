"""Steps 1 and 2 of the reports: the runs (``wsolbench run``) and their results, copied.

Every method of :data:`~report_settings.METHODS` that ``wsolbench list`` knows runs every seed with
``--resume --profile`` under ``work_dirs/reports/`` — a seed-independent one (its capability) once,
seed 0, which stands for every seed; each finished run's ``result.json`` and per-image records are
copied under ``reports/results/``, from which the boards are rendered.
"""

from __future__ import annotations

import json
import shutil

from report_settings import DATASET, METHODS, PROFILE_THREADS, REPO, RESULTS, WORK, wsolbench

from wsolbench.results.per_image import copy_result


def known_methods(wanted: list[str]) -> list[str]:
    from wsolbench.registry import list_methods

    known = set(list_methods())
    for name in wanted:
        if name not in known:
            print(f"skip {name}: `wsolbench list` does not know it (not in this checkout yet)")
    return [m for m in wanted if m in known]


def seeds_of(method: str, seeds: tuple[int, ...]) -> tuple[int, ...]:
    """The seeds a method runs: all, or the first alone for a seed-independent method."""
    from wsolbench.registry import get_method

    return seeds[:1] if get_method(method).capabilities.seed_independent else seeds


def run_all(
    methods: list[str], seeds: tuple[int, ...], finished_only: bool = False
) -> dict[str, str]:
    """Step 1; returns {"method/seedS": reason} for the runs left out (failed, or not finished
    with ``finished_only``, which starts no training and only adds missing cost)."""
    failed = {}
    for method in methods:
        for seed in seeds_of(method, seeds):
            work_dir = WORK / method / f"seed{seed}"
            result = REPO / work_dir / "result.json"
            if finished_only and not result.is_file():
                failed[f"{method}/seed{seed}"] = "not finished when the reports were made"
                print(f"skip {method} seed {seed}: {work_dir} holds no finished run")
                continue
            if result.is_file() and json.loads(result.read_text(encoding="utf-8")).get("cost"):
                print(f"keep {work_dir}: finished, with its cost")  # what --resume would do
                continue
            status = wsolbench(
                "run", "--method", method, "--dataset", DATASET, "--seed", seed,
                "--work-dir", work_dir, "--resume",
                "--profile", "--profile-threads", PROFILE_THREADS, *METHODS.get(method, []),
            )  # fmt: skip
            if status != 0:
                failed[f"{method}/seed{seed}"] = f"exit status {status}"
                print(f"run {method} seed {seed} failed (exit status {status}); left out")
    return failed


def collect_results(methods: list[str], seeds: tuple[int, ...]) -> None:
    """Step 2: copy each finished run's result.json and per-image records under
    reports/results/ (from scratch)."""
    shutil.rmtree(RESULTS, ignore_errors=True)
    for method in methods:
        for seed in seeds_of(method, seeds):
            source = REPO / WORK / method / f"seed{seed}"
            if (source / "result.json").is_file():
                copy_result(source, RESULTS / method / f"seed{seed}")
