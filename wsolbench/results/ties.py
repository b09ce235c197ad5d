"""Which rows a table can tell apart: every pair tested, Holm-corrected, shown as letter groups.

Testing each row against the top one only says nothing about the rows below: two of them may be
indistinguishable and swap under another policy. So every pair of rows is tested (paired tests on
the same resamples, :mod:`wsolbench.results.intervals`), the p-values are corrected for the number
of pairs by Holm's step-down procedure (the family-wise error stays below the level whatever the
dependence between the tests), and the result is printed the way statistics packages print Tukey
groupings: a compact letter display, where two rows sharing a letter are not significantly
different and two rows with no letter in common are (insert-and-absorb, Piepho 2004).

Pure arithmetic on p-values: nothing here resamples.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import ascii_lowercase

SIGNIFICANCE = 0.05  # family-wise level of the pairwise tests (after Holm)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: the j-th smallest is multiplied by
    ``m - j + 1`` (m tests, j from 1), made non-decreasing along that order and capped at 1. A
    test is significant at level α when its adjusted p is below α."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _letter(index: int) -> str:
    """a, b, ..., z, then aa, ab, ... (more than 26 groups in one table is unusual)."""
    text = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        text = ascii_lowercase[rest] + text
    return text


def letter_groups(n: int, different: set[tuple[int, int]]) -> list[str]:
    """The compact letter display of ``n`` rows (in rank order, best first).

    Args:
        different: the pairs ``(i, j)`` found significantly different (either order).

    Returns:
        Per row, its letters (``"a"``, ``"ab"``): rows sharing a letter are not significantly
        different; rows sharing none are. The first letter goes to the group of the first row.
    """
    groups: list[frozenset[int]] = [frozenset(range(n))] if n else []
    for i, j in sorted({(min(p), max(p)) for p in different}):
        split: list[frozenset[int]] = []
        for group in groups:
            if i in group and j in group:  # insert: a group may not hold a different pair
                split += [group - {i}, group - {j}]
            else:
                split.append(group)
        # absorb: a group inside another says nothing the larger one does not
        unique = list(dict.fromkeys(split))
        groups = [g for g in unique if not any(g < other for other in unique)]
    groups.sort(key=lambda g: sorted(g))
    return ["".join(_letter(k) for k, g in enumerate(groups) if row in g) for row in range(n)]


def supported_order(names: Sequence[str], above: set[tuple[int, int]]) -> str:
    """What the tests let a sentence claim about the order of ``names`` (rank order, best first);
    ``(i, j)`` in ``above``: row i is significantly above row j.

    When the rows not told apart form consecutive blocks, every row of a block significantly
    above every row of the blocks below: ``"a > b > {c, d}"``; otherwise each row with the rows
    it is significantly above (``"a above b, c; b above d"``), or that no pair is told apart.
    """
    n = len(names)
    different = above | {(j, i) for i, j in above}
    blocks: list[list[int]] = []
    for row in range(n):
        if blocks and all((k, row) not in different for k in blocks[-1]):
            blocks[-1].append(row)
        else:
            blocks.append([row])
    chain = all(
        (i, j) in above
        for b, block in enumerate(blocks)
        for i in block
        for later in blocks[b + 1 :]
        for j in later
    )
    if chain and len(blocks) > 1:

        def block_text(block: list[int]) -> str:
            inner = ", ".join(names[k] for k in block)
            return inner if len(block) == 1 else "{" + inner + "}"

        return " > ".join(block_text(b) for b in blocks)
    claims = [
        f"{names[i]} above {', '.join(names[j] for j in range(n) if (i, j) in above)}"
        for i in range(n)
        if any((i, j) in above for j in range(n))
    ]
    return "; ".join(claims) if claims else "no pair told apart"
