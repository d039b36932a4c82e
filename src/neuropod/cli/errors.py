"""The error a command raises for a mistake on its command line or in the files it was given."""

from __future__ import annotations


class CommandError(Exception):
    """A user error found by a command (not by argparse): printed as one line, exit code 2.

    Args:
        message: what is wrong, and where.
    """
