"""The reference model on the pytorch platform: a ``torch.nn.Module`` with weights, in packaged code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neuropod.packagers import create_pytorch_neuropod
from tests.models.python import write_code

ADDITION = """
    import os

    import torch


    class Addition(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # A parameter that requires grad: its outputs must still reach numpy.
            self.scale = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, y=None):
            out = x * self.scale
            return out if y is None else out + y


    def get_model(data_dir):
        module = Addition()
        module.load_state_dict(torch.load(os.path.join(data_dir, "weights.pt"), weights_only=True))
        module.eval()

        def infer(x, y=None):
            return {"out": module(torch.from_numpy(x), None if y is None else torch.from_numpy(y))}

        return infer
"""


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model, its scale of 1 loaded from a packaged ``weights.pt``."""
    torch.save({"scale": torch.ones(())}, workdir / "weights.pt")
    create_pytorch_neuropod(
        neuropod_path=path,
        model_name=path.name,
        code_path_spec=write_code(workdir, "torch_addition", ADDITION),
        data_paths=[{"path": str(workdir / "weights.pt"), "packaged_name": "weights.pt"}],
        entrypoint_package="torch_addition",
        entrypoint="get_model",
        **kwargs,
    )


#: A PyTorch model's strings are plain Python: the python platform covers them.
build_strings = None
