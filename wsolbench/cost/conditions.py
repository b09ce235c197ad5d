"""Timing conditions: what else ran while a timing ran, and whether it was clean.

No torch: ``/proc`` and the clock only, so that reports can wait for a quiet machine and tables can
judge a record without loading the measuring side.

- :class:`TimingMonitor`, entered around the timed calls, records the machine's cores, the
  threads the timing used (torch's CPU threads; 1 on CUDA, the launching thread), the load
  averages before and after, and — read over the timed calls — how many cores other processes
  kept busy on average (``others_cpu_cores``, ``/proc/stat`` minus ``/proc/self/stat``) and how
  much of the time this process's threads were runnable but waiting for a CPU (``wait_share``,
  ``/proc/self/task/*/schedstat``: the direct measure of a disturbed timing).
- A timing is **clean** (:data:`CLEAN_RULE`, :func:`timing_conditions`) when the threads waited
  at most 5 % of the time and the other processes used at most the cores the timing left free
  (+ 0.1); where neither can be read, the 1-minute load average before timing must be at most the
  free cores. The load average is recorded but is not the rule where /proc is readable: it lags
  by a minute and counts this process.
"""

from __future__ import annotations

import os
import time

CLEAN_RULE = (
    "clean: during the timed calls this process's threads waited for a CPU at most 5 % of the "
    "time they were runnable (/proc/self/task/*/schedstat), and other processes kept busy at "
    "most the cores the timing left free, cores - threads, + 0.1 (/proc/stat minus this "
    "process): every timing thread had a core of its own"
)
CLEAN_SLACK = 0.1  # cores: background noise tolerated on top of the cores the timing left free
MAX_WAIT_SHARE = 0.05  # of the runnable time: waits for a CPU a clean timing tolerates
MIN_WINDOW_S = 0.5  # shortest timed window whose CPU shares /proc/stat can tell (10-ms ticks)
#: the fewest untimed and timed batch-1 calls behind a reported latency: fewer, and the median is
#: of a process still warming its caches and allocator (``profile --warmup/--runs`` below them is
#: marked, not refused: a quick look is fine, a table says it is one)
MIN_WARMUP = 10
MIN_RUNS = 50


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) from ``/proc``, or
    None where it cannot be read. Busy = every state but idle and iowait; steal (time the
    hypervisor gave to other guests) counts as busy: it is time taken from this machine."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        with open("/proc/self/stat", encoding="ascii") as f:
            own = f.read()
        # Fields after the command name (which may hold spaces): utime, stime are 14th and 15th.
        rest = own[own.rindex(")") + 2 :].split()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, (int(rest[11]) + int(rest[12])) / tick


def _run_times() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) summed over this process's
    threads (``/proc/self/task/*/schedstat``, nanoseconds), or None where it cannot be read."""
    on_cpu = waiting = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as f:
                    fields = f.read().split()
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
            on_cpu += int(fields[0])
            waiting += int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return on_cpu / 1e9, waiting / 1e9


def _load_averages() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


class TimingMonitor:
    """What else ran while timing: enter before the timed calls, exit after them; ``conditions``
    is then the ``timing_conditions`` record (see the module docstring).

    Args:
        threads: the threads the timing uses (torch CPU threads; 1 on CUDA).
    """

    def __init__(self, threads: int):
        self.threads = int(threads)
        self.conditions: dict = {}

    def __enter__(self) -> TimingMonitor:
        self._load_before = _load_averages()
        self._cpu_before = _cpu_seconds()
        self._run_before = _run_times()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        run_after = _run_times()  # read in the reverse order of __enter__: the windows nest
        cpu_after = _cpu_seconds()
        wall = time.perf_counter() - self._wall
        others = own = wait_share = None
        # /proc/stat counts in clock ticks (10 ms per core): over a shorter window the shares
        # are all rounding and are not recorded; schedstat counts nanoseconds.
        if self._cpu_before is not None and cpu_after is not None and wall >= MIN_WINDOW_S:
            busy = cpu_after[0] - self._cpu_before[0]
            mine = cpu_after[1] - self._cpu_before[1]
            others = round(max(0.0, busy - mine) / wall, 3)
            own = round(mine / wall, 3)
        if self._run_before is not None and run_after is not None:
            on_cpu = run_after[0] - self._run_before[0]
            waiting = run_after[1] - self._run_before[1]
            if on_cpu + waiting > 0:
                wait_share = round(waiting / (on_cpu + waiting), 4)
        self.conditions = timing_conditions(
            cpus=os.cpu_count() or 1,
            threads=self.threads,
            others_cpu_cores=others,
            load_before=self._load_before,
            load_after=_load_averages(),
            own_cpu_cores=own,
            seconds=wall,
            wait_share=wait_share,
        )


def timing_conditions(
    *,
    cpus: int,
    threads: int,
    others_cpu_cores: float | None,
    load_before: list[float] | None,
    load_after: list[float] | None = None,
    own_cpu_cores: float | None = None,
    seconds: float | None = None,
    wait_share: float | None = None,
) -> dict:
    """The ``timing_conditions`` record, with ``clean`` decided by :data:`CLEAN_RULE`.

    Args:
        cpus: the machine's cores.
        threads: threads the timing used.
        others_cpu_cores: mean cores other processes kept busy during the timed calls (None
            where ``/proc/stat`` could not be read or the window was too short).
        load_before, load_after: (1, 5, 15)-minute load averages.
        wait_share: the fraction of their runnable time this process's threads waited for a CPU
            (None where ``schedstat`` could not be read).

    Each figure that was measured must pass; with neither measured, the 1-minute load average
    before timing must be at most the free cores.
    """
    allowed = max(cpus - threads, 0) + CLEAN_SLACK
    checks = {}
    if wait_share is not None:
        checks["wait_share"] = wait_share <= MAX_WAIT_SHARE
    if others_cpu_cores is not None:
        checks["others_cpu_cores"] = others_cpu_cores <= allowed
    if not checks and load_before:
        checks["load_avg_1min_before"] = load_before[0] <= allowed
    clean = bool(checks) and all(checks.values())
    basis = " and ".join(checks) or "nothing readable"
    return {
        "cpus": int(cpus),
        "threads": int(threads),
        "others_cpu_cores": others_cpu_cores,
        "wait_share": wait_share,
        "own_cpu_cores": own_cpu_cores,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "seconds": None if seconds is None else round(seconds, 2),
        "clean": bool(clean),
        "basis": basis,
        "rule": CLEAN_RULE,
    }


def latency_clean(cost: dict) -> bool:
    """True when ``cost``'s latency is one to report: its timing was clean (:data:`CLEAN_RULE`)
    after at least :data:`MIN_WARMUP` untimed and :data:`MIN_RUNS` timed calls. False when it was
    not, when it had fewer calls, or when its conditions were not recorded (a record from before
    they were)."""
    conditions = cost.get("timing_conditions")
    latency = cost.get("latency_ms") or {}
    enough = latency.get("warmup", 0) >= MIN_WARMUP and latency.get("runs", 0) >= MIN_RUNS
    return bool(isinstance(conditions, dict) and conditions.get("clean") and enough)
