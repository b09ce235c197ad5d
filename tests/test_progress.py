"""Progress where stderr is not a terminal: complete lines a log file or CI capture can show."""

import io

from wsolbench.util.progress import PlainProgress


def test_one_line_per_tenth_of_a_known_total():
    stream = io.StringIO()
    bar = PlainProgress(total=250, desc="maps", stream=stream)
    for _ in range(250):
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == [f"maps: {25 * k}/250 ({10 * k}%)" for k in range(1, 11)]


def test_a_step_over_a_tenth_prints_once_and_close_adds_no_repeat():
    stream = io.StringIO()
    with PlainProgress(total=10, desc="runs", stream=stream) as bar:
        bar.update(3)
        bar.update(1)
    assert stream.getvalue().splitlines() == ["runs: 3/10 (30%)", "runs: 4/10 (40%)"]


def test_without_a_total_lines_come_by_time():
    stream = io.StringIO()
    bar = PlainProgress(desc="steps", interval=0.0, stream=stream)
    bar.update(2)
    bar.set_postfix_str("loss 0.5")
    bar.update(1)
    bar.close()
    assert stream.getvalue().splitlines() == ["steps: 2", "steps: 3 loss 0.5"]
    stream = io.StringIO()
    PlainProgress(desc="empty", interval=60.0, stream=stream).close()
    assert stream.getvalue().splitlines() == ["empty: 0"]
