"""A user's text file read as UTF-8, and, when it is not, an error naming the file and the line.

Python's own ``UnicodeDecodeError`` says only ``'utf-8' codec can't decode byte 0xe9 in position
81``: neither the file (a command reads several) nor a line a user can find in an editor.
"""

from __future__ import annotations

from pathlib import Path


class NotUtf8Error(ValueError):
    """A text file is not UTF-8; the message names the file, the first bad line and the fix."""


def read_utf8(path: Path) -> str:
    """The text of ``path`` (a UTF-8 byte order mark, as spreadsheets write, dropped).

    Raises:
        NotUtf8Error: the file is not UTF-8 (OSError as ``read_bytes`` raises it).
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, data[: exc.start].count(b"\n") + 1) from None


def first_non_utf8_line(path: Path) -> int:
    """The 1-based number of the first line of ``path`` that is not UTF-8 (for readers that
    stream a file: their decoder reads ahead of the lines it hands out)."""
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 1


def not_utf8(path: Path, line: int) -> NotUtf8Error:
    """The error for ``path``, not UTF-8 at ``line``."""
    return NotUtf8Error(
        f"{path} line {line}: not UTF-8 text; save the file as UTF-8 (an editor's 'save with "
        "encoding', or `iconv -f latin1 -t utf-8`)"
    )
