"""Choosing the GPU a backend runs on, with one set of messages for every framework."""

from __future__ import annotations

import logging
from collections.abc import Callable

from neuropod.errors import OptionError

logger = logging.getLogger(__name__)


def choose_gpu(visible_gpu: int | None, count_gpus: Callable[[], int | None], framework: str) -> int | None:
    """The GPU to run on, or ``None`` for the CPU.

    A GPU that was asked for where the framework sees none runs the model on the CPU with a
    warning, as the original did; one beyond those it sees is an error.

    Args:
        visible_gpu: the ``visible_gpu`` the model was loaded with (already an int >= 0 or ``None``).
        count_gpus: how many GPUs the framework sees (``None``: some, but it cannot count them);
            called only when ``visible_gpu`` is set.
        framework: the framework, for messages (``"torch"``, ``"TensorFlow"``...).

    Returns:
        ``visible_gpu`` when the framework can run on it, else ``None``.

    Raises:
        OptionError: ``visible_gpu`` is not among the GPUs the framework sees.
    """
    if visible_gpu is None:
        return None
    count = count_gpus()
    if count == 0:
        logger.warning(
            "visible_gpu=%d was requested but %s sees no GPU; running on the CPU", visible_gpu, framework
        )
        return None
    if count is not None and visible_gpu >= count:
        raise OptionError(
            f"visible_gpu={visible_gpu} was requested, but {framework} sees only {count} GPU(s) "
            f"(numbered from 0)"
        )
    return visible_gpu
