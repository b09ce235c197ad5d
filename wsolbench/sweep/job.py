"""What one submitit job runs: the ``wsolbench`` entry point on a cell's argv, returning its exit
status (a failing cell is an outcome, never an exception that would stop the sweep).

Checkpointable: on SLURM, a preempted or timed-out job is requeued with the same argv, whose
``--resume`` continues the run from its last checkpoint.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

from submitit.helpers import Checkpointable


class CellRun(Checkpointable):
    """``entry(argv)`` for one cell; ``entry`` is ``wsolbench.cli.main.main`` (handed down by the
    command line, which this layer cannot import), pickled by reference."""

    def __init__(self, entry: Callable[[list[str]], int], argv: Sequence[str]):
        self.entry = entry
        self.argv = list(argv)

    def __call__(self) -> int:
        try:
            status = self.entry(list(self.argv))
        except SystemExit as exc:  # argparse's own exit
            status = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:  # a bug in the run: its traceback in the log, the sweep goes on
            traceback.print_exc()
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        return int(status or 0)
