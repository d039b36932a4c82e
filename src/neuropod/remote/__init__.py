"""Remote models: ``load_neuropod("http://host:port/v2/models/NAME")`` runs a model on a server.

::

    load_neuropod(url, timeout=5.0)          routes URLs here (``load_remote`` is the same call)
        NeuropodModel                         validates every call, as for any backend
        └── RemoteBackend          backend.py          URL, options, config from the metadata
            ├── HttpBackend        http_backend.py     httpx.Client, binary tensors
            └── GrpcBackend        grpc_backend.py     one grpc channel, raw contents
    url.py       model URLs (http[s]://, grpc[s]://)
    metadata.py  the model's specs, from the server's metadata
    errors.py    server answers -> ValidationError, PackageError, InferenceError, InferenceTimeout

The server is any of the Open Inference Protocol (KServe v2): ``neuropod serve``, whose
metadata carries the exact specs, or Triton, KServe, ... whose variable dims read as ``None``.
Importing this package imports neither httpx nor grpc; opening a model imports its protocol's.
"""

from neuropod.remote.backend import GrpcOptions, HttpOptions, RemoteBackend, load_remote
from neuropod.remote.url import ModelURL, is_remote_url, parse_model_url

__all__ = [
    "GrpcOptions",
    "HttpOptions",
    "ModelURL",
    "RemoteBackend",
    "is_remote_url",
    "load_remote",
    "parse_model_url",
]
