"""Fitting text to a terminal: its width, and shortening names and texts without breaking words.

Shared by the commands that print tables or lists (`stance score`, `stance labels check`...), so
every one of them shortens the same way: a long document name or path loses its middle, a long text
its end after a whole word, each marked by "…"; widths are counted in terminal cells (rich), so
wide (CJK) characters count twice.
"""

from __future__ import annotations

MIN_WIDTH = 60


def terminal_width() -> int:
    import shutil

    return max(MIN_WIDTH, shutil.get_terminal_size((80, 24)).columns)


def shorten_middle(text: str, width: int) -> str:
    """`text` within `width` terminal cells, its middle replaced by "…": a long document name or
    path keeps both its start and its end (the file name)."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    head, tail = (width - 1) // 2, width - 1 - (width - 1) // 2
    while head + tail > 0 and cell_len(text[:head]) + cell_len(text[len(text) - tail:]) + 1 > width:
        if head >= tail:  # wide (CJK) characters take two cells: give back one character at a time
            head -= 1
        else:
            tail -= 1
    return text[:head] + "…" + (text[len(text) - tail:] if tail else "")


def snippet(text: str, width: int) -> str:
    """`text` on one line of at most `width` cells, cut after a whole word and ended by "…"."""
    from rich.cells import cell_len

    text = " ".join(text.split())
    if cell_len(text) <= width:
        return text
    cut, used = "", 0
    for char in text:
        used += cell_len(char)
        if used > width - 1:
            break
        cut += char
    space = cut.rfind(" ")
    if space > len(cut) // 2:  # a whole word unless that throws away half the room (a long URL)
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"
