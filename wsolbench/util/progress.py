"""Progress for loops a person waits on: a bar on a terminal, plain periodic lines elsewhere.

A tqdm bar redraws itself with carriage returns, which a log file or CI capture shows as one
endless line, so when the stream is not a terminal :class:`PlainProgress` prints a complete line
at most every ``interval`` seconds (and one at the end) instead. Both go to stderr, like logging,
and keep stdout for results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO


class PlainProgress:
    """tqdm's small subset used here (``update``, ``set_postfix_str``, ``close``, iteration), as
    complete lines: ``"<desc>: 40/120 (33%) <postfix>"``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        interval: float = 30.0,
        stream: TextIO | None = None,
    ):
        self.iterable = iterable
        self.total = total if total is not None else _length(iterable)
        self.desc, self.interval = desc, interval
        self.stream = stream or sys.stderr
        self.n, self.postfix = 0, ""
        self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        finished = self.total is not None and self.n >= self.total
        # the last step's line is the close's, with the postfix the loop sets after that step
        if not finished and time.monotonic() - self._last >= self.interval:
            self._print()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print()

    def _print(self) -> None:
        self._last = time.monotonic()
        done = (
            f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)"
            if self.total
            else str(self.n)
        )
        line = " ".join(part for part in (f"{self.desc}:", done, self.postfix) if part)
        print(line, file=self.stream, flush=True)


def _length(iterable) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    unit: str = "it",
    leave: bool = True,
):
    """A progress bar over ``iterable`` (or a manual one of ``total`` steps).

    Returns:
        A tqdm bar when stderr is a terminal, a :class:`PlainProgress` when it is not, a silent
        tqdm when ``enabled`` is False; all support iteration, ``update``, ``set_postfix_str`` and
        ``close``.
    """
    from tqdm import tqdm

    if not enabled or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=not enabled)
    return PlainProgress(iterable, total=total, desc=desc)
