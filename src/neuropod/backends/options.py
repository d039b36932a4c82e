"""The load options of the built-in backends, importable without their frameworks.

Each backend class names its declaration in ``load_options``, and its row in
``neuropod.platforms`` names it too: so an application checks the options of a model that a
worker will run (``use_ope``, an isolated environment) before the worker starts, without
importing the framework the worker keeps out of the application.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from neuropod.options import Check, Options, int_at_least, option, optional

_TF_THREADS = optional(int_at_least(0, "(0: TensorFlow decides)"))
_ORT_THREADS = optional(int_at_least(0, "(0: onnxruntime's default)"))


def _is_provider(provider: Any) -> bool:
    if isinstance(provider, str):
        return True
    return (
        isinstance(provider, tuple)
        and len(provider) == 2
        and isinstance(provider[0], str)
        and isinstance(provider[1], dict)
    )


def _are_providers(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes))
        and all(_is_provider(provider) for provider in value)
    )


_PROVIDERS = optional(Check("a list of provider names or (name, options dict) pairs", _are_providers))


@dataclass(frozen=True)
class TorchScriptOptions(Options):
    """``intra_op_threads``, ``inter_op_threads``: torch's process-wide thread pools."""

    where = "platform 'torchscript'"

    intra_op_threads: int | None = option(None, optional(int_at_least(1)))
    inter_op_threads: int | None = option(None, optional(int_at_least(1)))


@dataclass(frozen=True)
class TensorFlowOptions(Options):
    """``intra_op_threads``, ``inter_op_threads``: per graph session, else process-wide."""

    where = "platform 'tensorflow'"

    intra_op_threads: int | None = option(None, _TF_THREADS)
    inter_op_threads: int | None = option(None, _TF_THREADS)


@dataclass(frozen=True)
class KerasOptions(Options):
    """``intra_op_threads``, ``inter_op_threads``: TensorFlow's, on Keras's TensorFlow backend only."""

    where = "platform 'keras'"

    intra_op_threads: int | None = option(None, _TF_THREADS)
    inter_op_threads: int | None = option(None, _TF_THREADS)


@dataclass(frozen=True)
class OnnxOptions(Options):
    """``providers`` (onnxruntime's execution providers) and the session's thread counts."""

    where = "platform 'onnx'"

    providers: Sequence[str | tuple[str, dict[str, Any]]] | None = option(None, _PROVIDERS)
    intra_op_threads: int | None = option(None, _ORT_THREADS)
    inter_op_threads: int | None = option(None, _ORT_THREADS)
