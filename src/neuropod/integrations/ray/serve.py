"""A Ray Serve deployment of a neuropod, speaking the Open Inference Protocol's JSON.

Routes (under the application's route prefix), as ``neuropod serve`` answers them:

- ``POST /v2/models/NAME/infer`` (also ``/v2/models/NAME/versions/V/infer``): the request
  ``{"id"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?: [{"name"}]}``
  gets ``{"model_name", "model_version", "id"?, "outputs": [{"name", "shape", "datatype",
  "data"}]}``, read and written by ``neuropod.protocol.http_codec`` as ``neuropod serve``
  does (binary tensors included; shared memory is not spoken here).
- ``GET /v2/models/NAME``: the model's metadata; ``GET /v2/health/live`` and ``/ready``.

Errors answer ``{"error": message}``: 400 for a request that breaks the protocol or the
spec, 404 for another model's name, 500 when the model fails. A Python caller holding a
``DeploymentHandle`` may also send a dict of input name -> array and get the outputs back.

Concurrent requests are merged by Ray Serve's ``@serve.batch`` into one call of the model,
concatenated along the batch dim, when the model's inputs and outputs all start with one
batch symbol and the requests' tensors agree past dim 0 (the rules of
``neuropod.spec.batch_dim``, which dynamic batching follows too); the rest run one by one.
Each request is checked against the input spec alone first, and a merged call that fails is
run again request by request, so that one request's mistake fails that request only.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from neuropod.errors import NeuropodError, SpecError, ValidationError
from neuropod.integrations.ray.actor import ModelActor, actor_load_options
from neuropod.integrations.ray.package_source import PackageSource, package_source
from neuropod.model import NeuropodModel
from neuropod.protocol import ProtocolError, SharedMemoryInput, http_codec, respond, spec_dtype_to_datatype
from neuropod.protocol.binary import parse_header_length
from neuropod.protocol.keys import HEADER_LENGTH
from neuropod.serving.errors import classify
from neuropod.serving.metadata import model_metadata
from neuropod.spec import TensorValidator, batch_dim
from neuropod.spec.elements import BytesConformer

#: Default batching of ``neuropod_deployment``.
MAX_BATCH_SIZE = 16
BATCH_WAIT_TIMEOUT_S = 0.005


@serve.deployment
class NeuropodDeployment(ModelActor):
    """Ray Serve replicas of a neuropod; build one with ``neuropod_deployment``.

    Args:
        package: where the replica finds the package.
        load_options: ``load_neuropod``'s options.
        name: the model's name in routes (default: the package's).
        max_batch_size: most requests merged into one call of the model.
        batch_wait_timeout_s: how long a request waits for others to join its batch.
    """

    def __init__(
        self,
        package: PackageSource,
        load_options: Mapping[str, Any],
        name: str | None,
        max_batch_size: int,
        batch_wait_timeout_s: float,
    ):
        super().__init__(package, load_options)
        self._name = name or self.model.name
        self._metadata = model_metadata(
            self._name, self.model.platform, self.model.input_specs, self.model.output_specs
        )
        self._datatypes = {s.name: spec_dtype_to_datatype(s.dtype) for s in self.model.output_specs}
        self._check_inputs = TensorValidator(self.model.input_specs, "input")
        self._conform_inputs = BytesConformer(self.model.input_specs, sent=True)
        self._mergeable = _mergeable(self.model)
        # @serve.batch's settings are fixed at decoration; these methods are how to change them.
        self._infer_batch.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self._infer_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]

    async def __call__(self, request: Request | Mapping[str, np.ndarray]) -> Any:
        """Answer an HTTP request, or run a handle call's dict of inputs."""
        if not isinstance(request, Request):  # a Request is a Mapping too: of its ASGI scope
            return _raise_or(await self._infer_batch(dict(request)))
        parts = [part for part in request.url.path.split("/") if part]
        try:
            if parts[-2:] == ["health", "live"] or parts[-2:] == ["health", "ready"]:
                return JSONResponse({parts[-1]: True})
            if "models" not in parts:
                return _error(404, f"No such path: {request.url.path}")
            rest = parts[parts.index("models") + 1 :]
            if not rest or rest[0] != self._name:
                return _error(404, f"No model named {rest[0] if rest else ''!r} here; this is {self._name!r}")
            if rest[-1] == "infer" and request.method == "POST":
                return await self._infer_request(await request.body(), request.headers.get(HEADER_LENGTH))
            if len(rest) == 1 and request.method == "GET":
                return JSONResponse(self._metadata)
            return _error(404, f"No such path: {request.url.path}")
        except Exception as exc:  # every failure answers JSON, as the protocol's server does
            status, _ = classify(exc)
            return _error(status, str(exc))

    async def _infer_request(self, body: bytes, header_length: str | None) -> Response:
        request = http_codec.decode_request(body, parse_header_length(header_length))
        request.check_outputs(self._datatypes, self._name)
        for name, value in request.inputs.items():
            if isinstance(value, SharedMemoryInput):
                raise ProtocolError(
                    f"Input '{name}' names a shared memory region, which a Ray Serve deployment "
                    f"cannot read; send its data in the request"
                )
        inputs: dict[str, np.ndarray] = self._conform_inputs(request.inputs)  # arrays, checked above
        outputs = _raise_or(await self._infer_batch(inputs))
        response = respond(request, outputs, self._name, self._datatypes)
        header, raws = http_codec.encode_response(response)
        if not raws:
            return Response(header, media_type="application/json")
        return Response(
            b"".join([header, *raws]),
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(len(header))},
        )

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
    async def _infer_batch(
        self, requests: list[dict[str, np.ndarray]]
    ) -> list[dict[str, np.ndarray] | Exception]:
        # The model blocks; in a thread, the replica's event loop keeps gathering requests.
        return await asyncio.to_thread(self._run, requests)

    def _run(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | Exception]:
        results: list[dict[str, np.ndarray] | Exception | None] = [None] * len(requests)
        groups: dict[Hashable, list[int]] = {}
        for i, inputs in enumerate(requests):
            try:
                self._check_inputs(inputs)  # alone, so that a bad request fails alone
            except ValidationError as exc:
                results[i] = exc
                continue
            key = batch_dim.merge_key(inputs) if self._mergeable else None
            groups.setdefault(object() if key is None else key, []).append(i)
        for members in groups.values():
            if len(members) > 1:
                merged = self._merged([requests[i] for i in members])
                if merged is not None:
                    for i, outputs in zip(members, merged, strict=True):
                        results[i] = outputs
                    continue
            for i in members:
                results[i] = self._one(requests[i])
        return [r if r is not None else RuntimeError("no result") for r in results]

    def _one(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | Exception:
        try:
            return self.model.infer(inputs)
        except NeuropodError as exc:
            return exc

    def _merged(self, group: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]] | None:
        """The outputs of the group's requests from one call, or ``None`` to run them one by one."""
        counts = [batch_dim.rows(inputs) for inputs in group]
        try:
            outputs = self.model.infer(batch_dim.merge(group))
        except NeuropodError:
            return None  # one request's mistake must not fail the others
        if batch_dim.output_without_rows(outputs, sum(counts)) is not None:
            return None
        return batch_dim.split(outputs, counts)



def neuropod_deployment(
    package: str | os.PathLike[str] | PackageSource,
    *,
    name: str | None = None,
    num_replicas: int = 1,
    max_batch_size: int = MAX_BATCH_SIZE,
    batch_wait_timeout_s: float = BATCH_WAIT_TIMEOUT_S,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    use_ope: bool = False,
    load_options: Mapping[str, Any] | None = None,
    ship_package: bool = False,
) -> serve.Application:
    """A Ray Serve application serving one neuropod; run it with ``serve.run``.

    Args:
        package: the package: a path every replica can read, or a ``PackageSource``.
        name: the model's name in routes (default: the package's).
        num_replicas: replicas, each loading the package once.
        max_batch_size: most requests merged into one call of the model.
        batch_wait_timeout_s: how long a request waits for others to join its batch.
        num_cpus: CPUs each replica reserves.
        num_gpus: GPUs each replica reserves (the model then runs on the replica's GPU).
        use_ope: run the model out of process, in a worker process of each replica.
        load_options: other ``load_neuropod`` options.
        ship_package: put the package into Ray's object store (needs ``ray.init`` first).

    Returns:
        The application.

    The example needs a Ray cluster, so the test suite skips it:

    >>> from ray import serve  # doctest: +SKIP
    >>> serve.run(neuropod_deployment("model.zip", num_replicas=2), route_prefix="/")  # doctest: +SKIP
    """
    options = actor_load_options(load_options, num_gpus=num_gpus, use_ope=use_ope)
    actor_options: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus:
        actor_options["num_gpus"] = num_gpus
    deployment = NeuropodDeployment.options(  # type: ignore[attr-defined]  # a Deployment, once decorated
        num_replicas=num_replicas, ray_actor_options=actor_options
    )
    application: serve.Application = deployment.bind(
        package_source(package, ship_package), options, name, max_batch_size, batch_wait_timeout_s
    )
    return application


def _mergeable(model: NeuropodModel) -> bool:
    try:
        batch_dim.merge_symbol(model.name, model.input_specs, model.output_specs)
    except SpecError:
        return False
    return True


def _raise_or(result: dict[str, np.ndarray] | Exception) -> dict[str, np.ndarray]:
    if isinstance(result, Exception):
        raise result
    return result


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
