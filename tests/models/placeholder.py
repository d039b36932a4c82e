"""The reference models on the placeholder platform: random outputs of the declared specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuropod.packagers import create_placeholder_neuropod


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model's interface; its outputs are random (only type and shape hold)."""
    create_placeholder_neuropod(neuropod_path=path, model_name=path.name, **kwargs)


build_strings = build_addition
