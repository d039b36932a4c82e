"""What a batch run has finished, kept in its output folder so that a killed run resumes.

Every output file is written beside its final name and renamed into place once whole, and a
shard counts as finished only once ``neuropod-run.json`` (itself replaced atomically) lists
it. A run killed at any point therefore leaves finished shards whole and listed, and at most
partial files (``.NAME.partial``), which the next run removes before redoing their shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from neuropod.batch.dataset import DatasetError

#: The run state's file name in the output folder.
STATE_FILE = "neuropod-run.json"

_PARTIAL = ".partial"
_VERSION = 1


def partial_path(final: Path) -> Path:
    """The name a file is written under before it is renamed to ``final``."""
    return final.with_name(f".{final.name}{_PARTIAL}")


def write_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(path)`` on a partial file, then rename it to ``final`` in one step.

    Args:
        final: where the file must appear.
        write: writes the whole file at the path it is given.
    """
    partial = partial_path(final)
    try:
        write(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    publish(final)


def publish(final: Path) -> None:
    """Rename the whole partial file of ``final`` to ``final``, in one step."""
    os.replace(partial_path(final), final)


def remove_partials(folder: Path) -> None:
    """Remove the partial files that a killed run left in ``folder`` and its sub-folders."""
    for path in folder.rglob(f".*{_PARTIAL}"):
        if path.is_file():
            path.unlink()


class RunState:
    """The shards a run into one output folder has finished, with their failed row ranges.

    Use ``RunState.open``; ``finish`` records a shard and rewrites the file atomically.
    """

    def __init__(self, path: Path, identity: Mapping[str, Any], shards: dict[str, Any]):
        self.path = path
        self.identity = dict(identity)
        self._shards = shards

    @classmethod
    def open(cls, folder: Path, identity: Mapping[str, Any]) -> RunState:
        """The state of the run into ``folder``, creating the folder for a new run.

        Args:
            folder: the output folder.
            identity: what makes two runs the same run (model, dataset); a folder holding a
                run with another identity is refused.

        Returns:
            The state, empty for a new run.

        Raises:
            DatasetError: the folder holds another run, files but no run state, or an
                unreadable state file.
        """
        path = folder / STATE_FILE
        identity = json.loads(json.dumps(identity))  # as it will read back from the file
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                saved_identity, shards = saved["run"], saved["shards"]
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(
                    f"{path} is not a run state neuropod can read ({exc}); delete it to start over"
                ) from None
            if saved_identity != identity:
                raise DatasetError(
                    f"{folder} holds the outputs of another run ({_describe(saved_identity)}), "
                    f"so this run ({_describe(identity)}) cannot resume there: choose another "
                    f"output folder, or delete {folder} to start over"
                )
            remove_partials(folder)
            return cls(path, identity, dict(shards))
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise DatasetError(
                f"Output folder {folder} is not empty and holds no run state ({STATE_FILE}); "
                f"choose a new or empty folder, so that no file of yours is overwritten"
            )
        folder.mkdir(parents=True, exist_ok=True)
        state = cls(path, identity, {})
        state._save()
        return state

    def finished(self, shard: str) -> bool:
        """Whether ``shard`` was finished by this run or an earlier one into the same folder."""
        return shard in self._shards

    def finish(self, shard: str, rows: int, failures: Sequence[Mapping[str, Any]]) -> None:
        """Record ``shard`` as finished, with the row ranges that failed, on disk at once."""
        self._shards[shard] = {"rows": rows, "failures": [dict(f) for f in failures]}
        self._save()

    def failures(self) -> dict[str, list[dict[str, Any]]]:
        """The failed row ranges of every finished shard that has some."""
        return {name: s["failures"] for name, s in self._shards.items() if s["failures"]}

    def _save(self) -> None:
        text = json.dumps({"version": _VERSION, "run": self.identity, "shards": self._shards}, indent=1)

        def write(path: Path) -> None:
            path.write_text(text + "\n", encoding="utf-8")

        write_atomically(self.path, write)


def _describe(identity: Mapping[str, Any]) -> str:
    return f"model {identity.get('model')!r} over {identity.get('dataset')}"
