"""What the application and a worker say to each other over the channel.

Every message is a tuple whose first item is its kind::

    application -> worker
        (LOAD, settings, arena)                 pickled ``LoadSettings``; answered by READY or ERROR
        (INFER, tensors, new_blocks, forget, release, gap, cpu)
                                                answered by OK or ERROR
        (STREAM, tensors, new_blocks, forget, release, gap, cpu)
                                                a call of ``infer_stream``: answered by ITEM,
                                                END or ERROR
        (NEXT, release)                         after an ITEM: answered by the next ITEM, END
                                                or ERROR
        (CANCEL,)                               after an ITEM: the worker closes the model's
                                                iterator and answers END (or ERROR)
        closing the socket                      the worker closes its backend and exits

    worker -> application
        (HELLO, token)                          first, from a worker that connected by path
                                                (``connection``): proves it is the one started
        (READY, pid, arena)
        (OK, tensors, new_blocks, forget, busy, cpu)
        (ITEM, tensors, new_blocks, forget, busy, cpu)
                                                one response of a stream, laid out as OK
        (END,)                                  the stream has no more responses
        (ERROR, error)                          see ``remote_errors.describe``

A stream is pulled: the worker asks the model for its next response only after NEXT, once the
application has read the last one out of the worker's arena (which the next one reuses). A
stream ends with END or ERROR; until then the channel carries nothing else.

``arena`` is ``(id, size)`` of the sender's arena (see ``tensors``), whose descriptor comes
with the message. ``tensors`` is a tuple of ``(name, dtype, shape, strides, owner, block,
offset)``:

- ``dtype``: a numpy ``dtype.str`` (``"<f4"``, ``"<U7"``: strings travel as fixed-width UCS-4,
  the layout numpy already has, so they need no encoding), or ``PICKLED`` for a value that is
  not an array (then ``shape`` is its byte count);
- ``strides``: ``None`` for C order;
- ``owner``: whose block holds the data: ``ARENA`` (the sender's arena: the receiver uses or
  copies the data before the next call), ``SENDER`` (one of the sender's pooled blocks),
  ``RECEIVER`` (a worker's output that views one of its inputs, or an input that is an earlier
  output) or ``NO_BLOCK`` (an empty tensor).

``new_blocks`` is ``((id, size), ...)`` for the sender's blocks the receiver has not seen yet;
their descriptors come with the message, in the same order. ``forget`` lists ids of the
sender's blocks it closed: the receiver unmaps them. ``release`` lists ids of the receiver's
blocks that the application no longer views: the worker may reuse them. ``gap`` is the
application's time between its last answer and this request, ``busy`` the worker's time
between request and answer, in seconds, and ``cpu`` the CPU the sender runs on: each side waits
awake only for a quick peer on another CPU (see ``channel``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOAD = "load"
HELLO = "hello"
READY = "ready"
INFER = "infer"
OK = "ok"
ERROR = "error"
STREAM = "stream"
ITEM = "item"
NEXT = "next"
CANCEL = "cancel"
END = "end"

SENDER = 0
RECEIVER = 1
NO_BLOCK = 2
ARENA = 3

PICKLED = "pickle"


@dataclass(frozen=True)
class LoadSettings:
    """What a worker needs to load its model, sent once after it starts.

    Attributes:
        root: the package's directory (a zip's extracted copy), opened without re-verifying.
        path: where the application loaded the package from, for messages.
        platform: the package's platform, whose backend the worker runs.
        options: the platform backend's load options (checked by the application, where it
            could import the backend's declaration).
        use_gpu: whether the worker's backend gets ``visible_gpu=0`` (the GPU the application
            chose is the only one the worker sees).
        memory_limit: the worker's address-space limit in bytes (``RLIMIT_AS``), or ``None``.
        also_accepted: the application's other option names, which messages about unknown
            options list as accepted.
        sys_path: the application's ``sys.path``, appended to the worker's own, so that the
            worker imports what the application could (classes a saved model refers to).
    """

    root: str
    path: str
    platform: str
    options: dict[str, Any] = field(default_factory=dict)
    use_gpu: bool = False
    memory_limit: int | None = None
    also_accepted: tuple[str, ...] = ()
    sys_path: tuple[str, ...] = ()
