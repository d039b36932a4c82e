"""Which gRPC server runs the service: pygrpc-native's Rust front or grpcio (``grpc_front``).

Kept apart from both front ends so that choosing one imports neither.
"""

from __future__ import annotations

import importlib.util

#: The ``--grpc-front`` choices: ``auto`` takes ``native`` where pygrpc-native is installed.
GRPC_FRONTS = ("auto", "native", "grpcio")


def native_available() -> bool:
    """Whether pygrpc-native (the ``grpc-native`` extra) is installed."""
    return importlib.util.find_spec("pygrpc_native") is not None


def resolve_front(front: str) -> str:
    """The front end ``front`` stands for: ``native`` or ``grpcio``.

    Raises:
        ValueError: ``front`` is not one of ``GRPC_FRONTS``, or ``native`` is asked for where
            pygrpc-native is not installed.
    """
    if front not in GRPC_FRONTS:
        raise ValueError(f"grpc_front must be one of {', '.join(GRPC_FRONTS)}, got {front!r}")
    if front == "auto":
        return "native" if native_available() else "grpcio"
    if front == "native" and not native_available():
        raise ValueError(
            "grpc_front='native' needs pygrpc-native: pip install 'neuropod[grpc-native]' "
            "(or use grpc_front='auto', which falls back to grpcio)"
        )
    return front
