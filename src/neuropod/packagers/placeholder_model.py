"""The code inside placeholder packages: random outputs shaped by the output spec.

This file is copied into each placeholder package as its entrypoint, so it depends on numpy
alone and runs under any loader of the python platform, the original Neuropod's included.
"""

import json
import os

import numpy as np

SPEC_FILE = "placeholder.json"
_MAX_FREE_DIM = 4


def get_model(data_dir):
    """Entrypoint: build the placeholder model from the spec stored in ``data_dir``."""
    with open(os.path.join(data_dir, SPEC_FILE)) as f:
        spec = json.load(f)
    return PlaceholderModel(spec["input_spec"], spec["output_spec"], spec["seed"])


class PlaceholderModel:
    """Returns random outputs; a symbol that also occurs in the inputs takes the input's size."""

    def __init__(self, input_spec, output_spec, seed):
        self.input_spec = input_spec
        self.output_spec = output_spec
        self.rng = np.random.default_rng(seed)

    def __call__(self, **inputs):
        sizes = {}  # type: dict[str, int]
        for spec in self.input_spec:
            array = inputs.get(spec["name"])
            if array is None:
                continue
            # no zip(strict=): this file must run on the original's Pythons (<= 3.8) too
            for dim, size in zip(spec["shape"], np.shape(array)):  # noqa: B905
                if isinstance(dim, str):
                    sizes.setdefault(dim, size)
        return {spec["name"]: self._random(spec, sizes) for spec in self.output_spec}

    def _random(self, spec, sizes):
        shape = []
        for dim in spec["shape"]:
            if isinstance(dim, int):
                shape.append(dim)
            elif isinstance(dim, str):
                shape.append(sizes.setdefault(dim, int(self.rng.integers(1, _MAX_FREE_DIM + 1))))
            else:
                shape.append(int(self.rng.integers(1, _MAX_FREE_DIM + 1)))
        dtype = spec["dtype"]
        if dtype == "string":
            words = self.rng.integers(0, 1000, size=shape)
            return np.vectorize(lambda n: f"placeholder_{n}", otypes=[str])(words).astype(str)
        if dtype == "bytes":
            words = self.rng.integers(0, 1000, size=shape)
            return np.vectorize(lambda n: f"placeholder_{n}".encode(), otypes=[object])(words)
        if dtype == "bool":
            return self.rng.integers(0, 2, size=shape).astype(bool)
        if np.issubdtype(np.dtype(dtype), np.floating):
            return self.rng.random(size=shape).astype(dtype)
        return self.rng.integers(0, 100, size=shape).astype(dtype)
