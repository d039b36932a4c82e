"""What every Ray actor or replica running a package shares: its load options, and its model's lifetime."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from neuropod.integrations.ray.package_source import PackageSource
from neuropod.loader import load_neuropod


def actor_load_options(
    load_options: Mapping[str, Any] | None, *, num_gpus: float, use_ope: bool = False
) -> dict[str, Any]:
    """``load_neuropod``'s options for an actor that reserves ``num_gpus`` GPUs.

    Args:
        load_options: the options the caller gave.
        num_gpus: the GPUs each actor reserves; with any, the model runs on the actor's first
            GPU (``visible_gpu=0``) unless ``load_options`` names one.
        use_ope: run the model out of process (adds ``use_ope=True``).

    Returns:
        A new dict; ``load_options`` is left as it was.
    """
    options = dict(load_options or {})
    if use_ope:
        options["use_ope"] = True
    if num_gpus and "visible_gpu" not in options:
        options["visible_gpu"] = 0  # Ray shows an actor only its own GPUs, numbered from 0
    return options


class ModelActor:
    """Base of the Ray actors that load a package once and run it until Ray drops them.

    Ray calls no ``close`` on an actor: the model (and its worker processes, or extracted
    files) is released when the actor is collected.

    Args:
        package: a ``PackageSource``, or a path every worker can read.
        load_options: ``load_neuropod``'s options.
    """

    def __init__(
        self, package: PackageSource | str | os.PathLike[str], load_options: Mapping[str, Any]
    ) -> None:
        source = package if isinstance(package, PackageSource) else PackageSource.at(package)
        self.model = load_neuropod(source.local_path(), **load_options)

    def __del__(self) -> None:
        # getattr: __init__ may have failed before the model was loaded.
        model = getattr(self, "model", None)
        if model is not None:
            model.close()
