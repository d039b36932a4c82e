"""Compare two models of one problem, from two frameworks, with one metrics pipeline.

The problem: predict ``y`` (batch, 1) from ``x`` (batch, 8). A linear regression is trained
with torch, then exported twice: to TorchScript and to ONNX. Both packages implement the same
problem (the same input and output specs), so the same dataset and the same metrics evaluate
both, without a line of framework code in the evaluation:

    python examples/compare_models.py

Needs torch, onnx and onnxruntime (``pip install 'neuropod[torch,onnx]'``). Everything is
written to a temporary folder.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuropod.batch import evaluate
from neuropod.packagers import create_onnx_neuropod, create_torchscript_neuropod

FEATURES = 8
SPEC: dict[str, Any] = {
    "input_spec": [{"name": "x", "dtype": "float32", "shape": ("batch", FEATURES)}],
    "output_spec": [{"name": "y", "dtype": "float32", "shape": ("batch", 1)}],
}


class Regression(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.linear(x)}


def make_dataset(
    folder: Path, rng: np.random.Generator, shards: int = 4, rows: int = 25_000
) -> tuple[np.ndarray, np.ndarray]:
    """Shards of ``x`` and the target ``y_true``; returns the true weights and bias too."""
    weights = rng.normal(size=(FEATURES, 1)).astype(np.float32)
    bias = np.float32(0.5)
    folder.mkdir()
    for i in range(shards):
        x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
        noise = rng.normal(scale=0.1, size=(rows, 1)).astype(np.float32)
        np.savez(folder / f"part-{i:02d}.npz", x=x, y_true=x @ weights + bias + noise)
    return weights, np.array([bias])


def train(rng: np.random.Generator, weights: np.ndarray, bias: np.ndarray) -> Regression:
    """A regression fitted on fresh samples of the same problem."""
    torch.manual_seed(0)
    model = Regression()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.from_numpy(rng.normal(size=(4096, FEATURES)).astype(np.float32))
    target = x @ torch.from_numpy(weights) + torch.from_numpy(bias)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x)["y"], target)
        loss.backward()
        optimizer.step()
    return model.eval()


def export(model: Regression, folder: Path) -> dict[str, Path]:
    """The model as a TorchScript package and an ONNX package."""
    example = torch.zeros(2, FEATURES)
    with warnings.catch_warnings():
        # torch deprecates TorchScript and the legacy ONNX exporter; both are what this
        # example compares (the legacy exporter is also the fast one, needing no onnxscript).
        warnings.filterwarnings("ignore", "`torch.jit.trace` is deprecated", DeprecationWarning)
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning
        )
        traced = torch.jit.trace(model, example, strict=False)
        onnx_file = folder / "regression.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(onnx_file),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
        )
    torchscript = folder / "regression_torchscript"
    create_torchscript_neuropod(neuropod_path=torchscript, model_name="regression", module=traced, **SPEC)
    onnx = folder / "regression_onnx"
    create_onnx_neuropod(neuropod_path=onnx, model_name="regression", model_path=onnx_file, **SPEC)
    return {"torchscript": torchscript, "onnx": onnx}


# The problem's metrics: functions of the outputs and targets, whatever model produced them.
def mae(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> float:
    return float(np.mean(np.abs(outputs["y"] - targets["y_true"])))


def rmse(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> float:
    return float(np.sqrt(np.mean((outputs["y"] - targets["y_true"]) ** 2)))


def r2(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> float:
    target = targets["y_true"]
    return float(1 - np.sum((outputs["y"] - target) ** 2) / np.sum((target - target.mean()) ** 2))


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights, bias = make_dataset(folder / "data", rng)
        packages = export(train(rng, weights, bias), folder)
        print(f"evaluating {', '.join(packages)} on {folder / 'data'}\n")
        evaluate(
            packages,
            folder / "data",
            metrics={"mae": mae, "rmse": rmse, "r2": r2},
            targets=["y_true"],
            batch_size=4096,
        )


if __name__ == "__main__":
    main()
