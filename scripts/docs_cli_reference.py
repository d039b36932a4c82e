"""mkdocs hook: writes the command-line reference from the ``neuropod`` argument parsers.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; at build time it is replaced by a
section per command (usage, description, every argument with its help and default), made from
``neuropod.cli.main.build_parser()``, so the page can never drift from the command. Run as a
script, it prints the generated markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"
WIDTH = "100"  # the width argparse wraps usage lines at, fixed so the page is the same everywhere

# The hook documents this checkout's parsers, whatever neuropod the interpreter has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker of the CLI page with the generated reference (mkdocs hook)."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its {MARKER} marker")
    return markdown.replace(MARKER, reference())


def reference() -> str:
    """The markdown reference of every ``neuropod`` command and subcommand."""
    from neuropod.cli.main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return "\n".join(_section(parser, 2) for parser in _parsers(build_parser()))
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def _section(parser: argparse.ArgumentParser, level: int) -> str:
    lines = [f"{'#' * level} `{parser.prog}`", ""]
    if parser.description:
        lines += [_local(parser.description), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    for group in parser._action_groups:
        actions = [action for action in group._group_actions if action.help != argparse.SUPPRESS]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| argument | meaning |", "|---|---|"]
        for action in actions:
            lines += _rows(parser, action)
        lines.append("")
    if parser.epilog:
        lines += ["```text", _local(parser.epilog).strip(), "```", ""]
    return "\n".join(lines)


def _rows(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    if isinstance(action, argparse._SubParsersAction):
        # One row per subcommand, linking to its section (the heading's anchor).
        return [
            f"| [`{choice.dest}`](#{_anchor(parser.prog, choice.dest)}) | {_local(choice.help or '')} |"
            for choice in action._choices_actions
        ]
    return [f"| {_names(action)} | {_meaning(parser, action)} |"]


def _anchor(prog: str, command: str) -> str:
    return f"{prog} {command}".replace(" ", "-")


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    takes_value = action.nargs != 0
    metavar = action.metavar or action.dest.upper()
    suffix = f" {metavar}" if takes_value and not isinstance(metavar, tuple) else ""
    return ", ".join(f"`{option}{suffix}`" for option in action.option_strings)


def _meaning(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text += f" (one of: {', '.join(map(str, action.choices))})"
    if action.required and action.option_strings:
        text += " (required)"
    return _local(text).replace("|", "\\|").replace("\n", " ")


def _local(text: str) -> str:
    # Help texts may show where this machine keeps things (the environment cache).
    return text.replace(str(Path.home()), "~")


if __name__ == "__main__":
    print(reference())
