"""Neuropods on Ray: batch inference with Ray Data, online serving with Ray Serve.

Needs Ray (``pip install 'neuropod[ray]'``), imported when a name of this module is first used;
``import neuropod`` never imports it.

Batch inference over a ``ray.data.Dataset``, on a pool of actors that each load the package
once::

    import ray
    from neuropod.integrations.ray import infer_dataset

    ds = ray.data.read_parquet("s3://bucket/features/")
    outputs = infer_dataset(ds, "/shared/models/ranker.zip", batch_size=4096, concurrency=8)
    outputs.write_parquet("s3://bucket/scores/")

The same runner as ``neuropod.batch.run``, with resumable output shards, on Ray::

    neuropod run model.zip --input data/ --output out/ --engine ray --address auto
    # or: neuropod.batch.run("model.zip", "data/", output="out/", engine=RayEngine(concurrency=8))

Online serving with Ray Serve, speaking the Open Inference Protocol's JSON
(``POST /v2/models/NAME/infer``), with requests batched by Ray Serve::

    from ray import serve
    from neuropod.integrations.ray import neuropod_deployment

    serve.run(neuropod_deployment("model.zip", num_replicas=2, max_batch_size=32))

On a real cluster
-----------------
With no address, ``ray.init()`` starts a Ray on this machine; pass ``address="auto"`` (or
``--address auto``) on a cluster node, or ``"ray://HEAD:10001"`` from outside. Every worker
loads the package itself, so it must reach it:

- a path that exists on every node (the package baked into the image, or copied to each node);
- a shared filesystem (NFS, a mounted bucket) at the same path everywhere;
- or Ray's object store: ``ship_package=True`` (``--ship-package``) puts the zipped package
  there once, and each worker process writes it to a local temporary file before loading it
  (the package must fit in the object store; models of gigabytes are better on a shared
  filesystem).

With ``neuropod run --engine ray`` the workers also read the dataset's files, which must
therefore be on a shared filesystem too; the driver writes the outputs. The framework a
package needs (torch, onnxruntime, ...) must be installed on every worker, as must neuropod
(a ``runtime_env`` in ``init_options`` can install them).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from neuropod.errors import BackendUnavailable

if importlib.util.find_spec("ray") is None:
    raise BackendUnavailable("neuropod.integrations.ray needs Ray: pip install 'neuropod[ray]'")

__all__ = [
    "NeuropodDeployment",
    "NeuropodPredictor",
    "PackageSource",
    "RayEngine",
    "infer_dataset",
    "neuropod_deployment",
]

# Imported on first use: Ray Data and Ray Serve each take seconds to import.
_EXPORTS = {
    "NeuropodDeployment": "neuropod.integrations.ray.serve",
    "NeuropodPredictor": "neuropod.integrations.ray.data",
    "PackageSource": "neuropod.integrations.ray.package_source",
    "RayEngine": "neuropod.integrations.ray.engine",
    "infer_dataset": "neuropod.integrations.ray.data",
    "neuropod_deployment": "neuropod.integrations.ray.serve",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
