"""Plain-text tables: the one printer behind the commands' listings and ``evaluate``'s scores.

Hand-written rather than ``tabulate`` or ``rich``: the format (columns padded to their widest
cell, two spaces apart, no rules, no trailing spaces) is what the commands have always printed and
what scripts split on whitespace; ``tabulate``'s ``plain`` format comes close but reformats cells
it takes for numbers (``1,000`` as ``1000``) unless told not to, and would be a dependency of
neuropod's core for twenty lines, while ``rich`` draws boxes and costs tens of milliseconds of
import on every command.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["table"]


def table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] | None = None,
    indent: int = 2,
    right: Iterable[int] = (),
) -> str:
    """Rows as columns padded to their widest cell, separated by two spaces.

    Args:
        rows: the cells, row by row; every row has as many cells as ``header``.
        header: the column titles, printed first.
        indent: spaces before every line.
        right: indices of the columns aligned to the right (numbers).

    Returns:
        The lines of the table joined by newlines, without a final newline (``""`` for no
        rows and no header).

    >>> print(table([["a", "1"], ["bb", "22"]], ["name", "n"], indent=0, right=[1]))
    name   n
    a      1
    bb    22
    """
    lines = [list(header)] if header is not None else []
    lines += [list(row) for row in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    right_columns = set(right)
    out = []
    for line in lines:
        cells = [
            cell.rjust(width) if i in right_columns else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append(" " * indent + "  ".join(cells).rstrip())
    return "\n".join(out)
