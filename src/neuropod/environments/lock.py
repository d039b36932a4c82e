"""Locked requirements (``0/requirements.lock``): made with uv at packaging, read and checked at load.

The lock is pip-compile's format, which the original Neuropod wrote too: one pinned requirement
per line (``name==version``, optionally ``; marker`` and ``--hash=...`` options, ``\\``
continuations), ``#`` comments, and option lines such as ``--find-links DIR``, ``--index-url
URL`` or ``--no-index``, which the environment build honours.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuropod.environments.errors import RequirementsError
from neuropod.environments.resolver import UvFailed, run_uv
from neuropod.package import layout

#: What the lock's header names as the command that wrote it.
COMPILE_COMMAND = "neuropod: create_python_neuropod(requirements=...) with uv pip compile"

_HASH_OPTION = re.compile(r"\s+--hash[=\s]\S+")
_COMMENT = re.compile(r"(^|\s)#.*$")
_FIND_LINKS = re.compile(r"^\s*(?P<option>-f|--find-links)[=\s]\s*(?P<path>\S+)\s*$")
_INCLUDES = ("-r", "--requirement", "-c", "--constraint")
_INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "--index")
_EDITABLE = ("-e", "--editable")


@dataclass(frozen=True)
class LockedRequirement:
    """One requirement of a lock.

    Attributes:
        text: the requirement as written, without its hashes, e.g. ``"npdemo-lib==1.0"``.
        name: its canonical distribution name, or ``None`` for an editable requirement.
    """

    text: str
    name: str | None

    def problem_here(self) -> str | None:
        """Why the running environment does not satisfy this requirement, or ``None`` if it does.

        Returns:
            e.g. ``"npdemo-lib==1.0 (installed: 2.0)"`` or ``"npdemo-lib==1.0 (not installed)"``.
        """
        if self.name is None:
            return f"{self.text} (an editable requirement is always installed in an environment of its own)"
        requirement = _requirement(self.text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            return None
        if requirement.url:
            return f"{self.text} (a direct reference is always installed in an environment of its own)"
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            return f"{self.text} (not installed)"
        if requirement.specifier.contains(installed, prereleases=True):
            return None
        return f"{self.text} (installed: {installed})"


@dataclass(frozen=True)
class RequirementLock:
    """The parsed contents of a ``requirements.lock``.

    Attributes:
        requirements: the requirements, in file order.
        options: the option lines (``--find-links DIR``, ``--no-index``, ...), in file order.
    """

    requirements: tuple[LockedRequirement, ...]
    options: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, source: str = layout.REQUIREMENTS_LOCK) -> RequirementLock:
        """Parse a lock in pip-compile's format.

        Args:
            text: the file's contents.
            source: where it comes from, for messages.

        Raises:
            RequirementsError: a line is not a requirement or option, or names another file.
        """
        requirements: list[LockedRequirement] = []
        options: list[str] = []
        for number, line in _logical_lines(text):
            first = line.split(maxsplit=1)[0]
            if first.split("=", 1)[0] in _INCLUDES:
                raise RequirementsError(
                    f"{source}, line {number}: a lock must be self-contained, but {line!r} includes "
                    f"another file"
                )
            if first.split("=", 1)[0] in _EDITABLE:
                requirements.append(LockedRequirement(_HASH_OPTION.sub("", line), None))
            elif line.startswith("-"):
                options.append(line)
            else:
                stripped = _HASH_OPTION.sub("", line).strip()
                try:
                    requirement = _requirement(stripped)
                except ValueError as exc:
                    raise RequirementsError(
                        f"{source}, line {number}: {stripped!r} is not a requirement ({exc})"
                    ) from None
                requirements.append(LockedRequirement(stripped, _canonical(requirement.name)))
        return cls(tuple(requirements), tuple(options))

    @classmethod
    def read(cls, root: Path) -> RequirementLock | None:
        """The lock of the package directory ``root``, or ``None`` when it has none.

        Raises:
            RequirementsError: the lock is malformed.
        """
        path = root / layout.REQUIREMENTS_LOCK
        if not path.is_file():
            return None
        return cls.parse(path.read_text(encoding="utf-8"), str(path))

    @property
    def names(self) -> frozenset[str]:
        """The canonical names of the locked distributions."""
        return frozenset(req.name for req in self.requirements if req.name is not None)

    def version_of(self, name: str) -> str | None:
        """The version ``name`` is pinned to (``==``), or ``None`` if it is not pinned here."""
        wanted = _canonical(name)
        for req in self.requirements:
            if req.name == wanted:
                pins = [
                    spec.version
                    for spec in _requirement(req.text).specifier
                    if spec.operator in ("==", "===")
                ]
                return pins[0] if pins else None
        return None

    def problems_here(self) -> list[str]:
        """Every requirement the running environment does not satisfy, with the reason."""
        return [problem for req in self.requirements if (problem := req.problem_here()) is not None]

    def render(self, extra: Iterable[str] = ()) -> str:
        """The lock as a requirements file (options first), with ``extra`` requirements added."""
        return "\n".join([*self.options, *(req.text for req in self.requirements), *extra]) + "\n"


def lock_requirements(requirements: str, *, python: str | None = None) -> str:
    """Pin ``requirements`` and everything they need, with ``uv pip compile``.

    Versions installed in the running environment are preferred wherever they satisfy the
    requirements, so that a model packaged where it was developed runs in that environment
    without an environment of its own; everything else gets the newest version that fits.
    Option lines (``--find-links DIR``, ``--index-url URL``, ``--no-index``) are kept in the lock,
    so that its environment is built from the same places (relative ``--find-links`` folders
    are made absolute from the working directory).

    Args:
        requirements: pip's requirements format, e.g. ``"numpy>=1.24\\nscipy"``.
        python: the interpreter to resolve for (default: the running one).

    Returns:
        The lock, in pip-compile's format.

    Raises:
        RequirementsError: the requirements are unsatisfiable or malformed (the message quotes
            the resolver), or an index could not be reached.
        BackendUnavailable: uv is not installed.
    """
    input_options = [line for _, line in _logical_lines(requirements) if line.startswith("-")]
    flags = {option.split(maxsplit=1)[0].split("=", 1)[0] for option in input_options}
    with tempfile.TemporaryDirectory(prefix="neuropod-lock-") as tmp:
        folder = Path(tmp)
        (folder / "requirements.in").write_text(_absolute_find_links(requirements), encoding="utf-8")
        # uv prefers the pins already in its output file: that is how installed versions win.
        (folder / "requirements.lock").write_text(_installed_pins(), encoding="utf-8")
        args = [
            "pip", "compile", "requirements.in", "--output-file", "requirements.lock",
            "--python", python or sys.executable, "--emit-find-links", "--quiet",
            "--custom-compile-command", COMPILE_COMMAND,
        ]  # fmt: skip
        if flags & set(_INDEX_OPTIONS):
            args.append("--emit-index-url")
        try:
            run_uv(args, cwd=folder)
        except UvFailed as exc:
            raise RequirementsError(
                f"The requirements cannot be locked; the resolver says:\n{exc.reason}"
            ) from None
        text = (folder / "requirements.lock").read_text(encoding="utf-8")
    if "--no-index" in flags:
        # uv does not write --no-index into its output; the build must not reach an index either.
        header, _, body = text.partition("\n\n")
        text = f"{header}\n--no-index\n\n{body}" if body else f"--no-index\n{text}"
    RequirementLock.parse(text, "the lock uv wrote")
    return text


def _installed_pins() -> str:
    from packaging.version import InvalidVersion, Version

    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        if not name or not version:
            continue
        try:
            Version(version)
        except InvalidVersion:
            continue
        pins.setdefault(_canonical(name), version)
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """``(first line number, line)`` of each non-empty line, continuations joined, comments removed."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate([*text.splitlines(), ""], 1):
        if not pending:
            start = number
        line = _COMMENT.sub("", raw).strip()
        pending.append(line.removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        joined = " ".join(part for part in pending if part)
        pending = []
        if joined:
            yield start, joined


def _absolute_find_links(requirements: str) -> str:
    """``requirements`` with relative ``--find-links`` folders made absolute (uv reads a copy elsewhere)."""
    lines = []
    for line in requirements.splitlines():
        match = _FIND_LINKS.match(line)
        if match and "://" not in match["path"] and not os.path.isabs(match["path"]):
            line = f"{match['option']} {os.path.abspath(match['path'])}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _requirement(text: str) -> Any:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(str(exc)) from None


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))
