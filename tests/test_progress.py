"""Progress away from a terminal (wsolbench.util.progress.PlainProgress): complete lines, each state
of the loop at most once."""

import io

from wsolbench.util.progress import PlainProgress


def test_the_last_step_is_one_line_with_the_latest_postfix():
    # interval 0: every step prints. The last step's own line would repeat the close's, with the
    # postfix (an epoch's loss) the loop sets after that step: only the close prints it.
    stream = io.StringIO()
    bar = PlainProgress(total=3, desc="epoch 1/1", interval=0.0, stream=stream)
    for step in range(3):
        bar.update(1)
        bar.set_postfix_str(f"loss {step}")
    bar.close()
    assert stream.getvalue().splitlines() == [
        "epoch 1/1: 1/3 (33%)",
        "epoch 1/1: 2/3 (67%) loss 0",
        "epoch 1/1: 3/3 (100%) loss 2",
    ]


def test_an_iterated_loop_ends_with_one_line():
    stream = io.StringIO()
    assert list(PlainProgress(range(2), desc="maps", interval=0.0, stream=stream)) == [0, 1]
    assert stream.getvalue().splitlines() == ["maps: 1/2 (50%)", "maps: 2/2 (100%)"]
