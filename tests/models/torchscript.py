"""The reference models on the torchscript platform: scripted ``torch.nn.Module``s."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from neuropod.packagers import create_torchscript_neuropod


class Addition(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if y is None:
            return {"out": x.clone()}
        return {"out": x + y}


class Strings(torch.nn.Module):
    def forward(self, s: list[str]) -> dict[str, list[str]]:
        return {"out": ["<" + word + ">" for word in s]}


def script(module: Any) -> Any:
    """``torch.jit.script``, without its deprecation warning (TorchScript is the point here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is", DeprecationWarning)
        return torch.jit.script(module)


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model, scripted."""
    create_torchscript_neuropod(neuropod_path=path, model_name=path.name, module=script(Addition()), **kwargs)


def build_strings(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The strings model, scripted."""
    create_torchscript_neuropod(neuropod_path=path, model_name=path.name, module=script(Strings()), **kwargs)
