"""How much a zipped package may expand to: the guard against zip bombs.

A few kilobytes of zip can declare, or inflate to, terabytes. Extraction refuses an archive
whose entries number more than ``max_files`` or whose sizes add up to more than ``max_bytes``,
first by what the archive declares (before writing anything), then by the bytes actually
written. The defaults are generous for real models and are set per process with environment
variables:

- ``NEUROPOD_MAX_PACKAGE_BYTES``: the most bytes a package may extract to (default 64 GiB);
- ``NEUROPOD_MAX_PACKAGE_FILES``: the most entries it may hold (default 100,000).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from neuropod.errors import PackageError

MAX_BYTES_ENV = "NEUROPOD_MAX_PACKAGE_BYTES"
MAX_FILES_ENV = "NEUROPOD_MAX_PACKAGE_FILES"
DEFAULT_MAX_BYTES = 64 << 30
DEFAULT_MAX_FILES = 100_000


@dataclass(frozen=True)
class ExtractionLimits:
    """The most a zipped package may extract to.

    Args:
        max_bytes: the most bytes, all files together.
        max_files: the most entries (files, directories and links).
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES

    @classmethod
    def from_env(cls) -> ExtractionLimits:
        """The limits set by ``NEUROPOD_MAX_PACKAGE_BYTES`` and ``NEUROPOD_MAX_PACKAGE_FILES``.

        Raises:
            PackageError: a variable is set to something other than a positive integer.
        """
        return cls(_env_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES), _env_int(MAX_FILES_ENV, DEFAULT_MAX_FILES))

    def check_declared(self, archive: Path, infos: Sequence[zipfile.ZipInfo]) -> None:
        """Refuse ``archive`` if its entries, as declared, exceed the limits.

        Raises:
            PackageError: too many entries, or too many bytes declared.
        """
        if len(infos) > self.max_files:
            raise PackageError(
                f"{archive} holds {len(infos)} entries, more than the limit of {self.max_files}; "
                f"if the package is genuine, raise {MAX_FILES_ENV}"
            )
        declared = sum(info.file_size for info in infos)
        if declared > self.max_bytes:
            raise PackageError(
                f"{archive} would extract to {declared} bytes, more than the limit of "
                f"{self.max_bytes}; if the package is genuine, raise {MAX_BYTES_ENV}"
            )

    def check_written(self, archive: Path, written: int) -> None:
        """Refuse ``archive`` once ``written`` bytes exceed the limit, whatever it declared.

        Raises:
            PackageError: more bytes were written than the limit allows.
        """
        if written > self.max_bytes:
            raise PackageError(
                f"{archive} expands past the limit of {self.max_bytes} bytes while being "
                f"extracted; if the package is genuine, raise {MAX_BYTES_ENV}"
            )


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise PackageError(f"{name} must be a positive integer, got {text!r}")
    return value
