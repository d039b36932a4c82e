"""Framework version ranges (``platform_version_semver``) and the framework versions installed.

A range is npm's syntax, as in the original Neuropod: ``1.13.1``, ``> 1.13.1``,
``1.4.0 - 1.6.0``, ``^2.1``, ``~1.2``, ``1.x``, ``>=1.0 <2.0 || ^3``, ``*``. It is parsed by
``node-semver`` (a port of npm's own implementation). Installed versions are PEP 440 strings,
translated to semver before comparing: ``2.13.0+cpu`` is ``2.13.0`` (a local label is build
metadata), ``2.21.0rc1`` is the pre-release ``2.21.0-rc.1`` (which ``>=2.0`` accepts, unlike
npm's default: an installed pre-release is what the user chose to run), ``1.2`` is ``1.2.0``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

from neuropod.errors import BackendUnavailable, SpecError, VersionRangeError
from neuropod.platforms import BUILTIN_PLATFORMS

#: The distributions that provide each built-in platform's framework, in the order they are
#: looked for (from ``neuropod.platforms``, the one table).
PLATFORM_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    name: platform.distributions for name, platform in BUILTIN_PLATFORMS.items()
}

_ANY = frozenset({"", "*", "x", "X"})


@dataclass(frozen=True)
class VersionRange:
    """An npm-style version range, parsed (and so validated) when made.

    Args:
        text: the range, e.g. ``"> 1.13.1"`` or ``"1.4.0 - 1.6.0"``.

    Raises:
        VersionRangeError: ``text`` is not a range; the message names it. It is a ``SpecError``
            and, as in the original Neuropod, a ``RuntimeError``.

    >>> VersionRange("^2.1").contains("2.13.0+cpu")
    True
    """

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise VersionRangeError(f"platform_version_semver must be a string, got {self.text!r}")
        if self.is_any:
            return
        nodesemver = _nodesemver()
        try:
            nodesemver.Range(self.text, loose=False)
        except (ValueError, TypeError) as exc:
            raise VersionRangeError(
                f"platform_version_semver {self.text!r} is not a version range ({exc}); "
                f"use npm's syntax, e.g. '1.13.1', '> 1.13.1', '1.4.0 - 1.6.0', '^2.1' or '*'"
            ) from None

    @property
    def is_any(self) -> bool:
        """Whether every version satisfies the range (``*``, or an empty range)."""
        return self.text.strip() in _ANY

    def contains(self, version: str) -> bool:
        """Whether ``version`` (a PEP 440 or semver string) is in the range.

        Raises:
            SpecError: ``version`` is not a version.
        """
        if self.is_any:
            return True
        return bool(
            _nodesemver().satisfies(to_semver(version), self.text, loose=False, include_prerelease=True)
        )

    def __str__(self) -> str:
        return self.text


def to_semver(version: str) -> str:
    """A PEP 440 version as the semver string that ranges compare with.

    Args:
        version: e.g. ``"2.13.0+cpu"``, ``"2.21.0rc1"``, ``"0.10"``.

    Returns:
        e.g. ``"2.13.0+cpu"``, ``"2.21.0-rc.1"``, ``"0.10.0"``.

    Raises:
        SpecError: ``version`` is neither a PEP 440 nor a semver version.
    """
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        if _nodesemver().valid(version, loose=True):
            return version
        raise SpecError(f"{version!r} is not a version") from None
    major, minor, patch = (*parsed.release, 0, 0)[:3]
    text = f"{major}.{minor}.{patch}"
    pre = []
    if parsed.pre is not None:
        pre += [parsed.pre[0], str(parsed.pre[1])]
    if parsed.dev is not None:
        pre += ["dev", str(parsed.dev)]
    if pre:
        text += "-" + ".".join(pre)
    if parsed.local is not None:
        text += "+" + parsed.local.replace("_", ".").replace("-", ".")
    return text


def installed_framework(platform: str) -> tuple[str, str] | None:
    """The distribution that provides ``platform``'s framework here, and its version.

    Args:
        platform: a platform name, e.g. ``"torchscript"``.

    Returns:
        ``(distribution, version)``, e.g. ``("torch", "2.13.0+cpu")``; ``None`` when the
        platform has no framework (``python``, third-party platforms) or it is not installed.
    """
    for distribution in PLATFORM_DISTRIBUTIONS.get(platform, ()):
        try:
            return distribution, importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _nodesemver() -> Any:
    try:
        import nodesemver
    except ImportError as exc:
        raise BackendUnavailable(
            "Version ranges (platform_version_semver) need the node-semver package: pip install node-semver"
        ) from exc
    return nodesemver
