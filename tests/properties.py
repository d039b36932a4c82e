"""Shared pieces of the property-based tests (``tests/*/test_properties.py``).

The profiles that bound how many examples each test runs are registered in ``tests/conftest.py``
(``HYPOTHESIS_PROFILE=thorough`` for many more).
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Iterator

from hypothesis import settings
from hypothesis import strategies as st

#: Any JSON value, NaN and infinities included (Python's ``json`` and Triton's clients write them),
#: and strings with lone surrogates (``json.dumps`` writes them as ``\\ud800`` escapes).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(), max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(), max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

#: Sizes for a tensor's dims: mostly small, sometimes huge (up to the int64 a protocol can carry).
dims = st.one_of(
    st.integers(0, 4),
    st.integers(0, 4),
    st.sampled_from([2**31, 2**32, 2**53, 2**60, 2**62, 2**63 - 1]),
    st.integers(0, 2**63 - 1),
)


def examples(fraction: float) -> int:
    """A share of the loaded profile's ``max_examples``, for tests whose examples cost more."""
    return max(10, int(settings.default.max_examples * fraction))


#: The most a decoder may allocate for the small inputs these tests give it, past the slack for
#: a string array (``neuropod.protocol.binary.STRING_ARRAY_SLACK``).
ALLOCATION_SLACK = 40 << 20


@contextlib.contextmanager
def bounded_allocation(input_size: int, factor: int = 512) -> Iterator[None]:
    """Fail if the block allocates more than ``ALLOCATION_SLACK + factor * input_size`` bytes at once.

    numpy reports its arrays' memory to ``tracemalloc``, so an array sized from a shape that a
    request merely claims shows up here even when the operating system would hand it out lazily.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1] - before
        if started:
            tracemalloc.stop()
    limit = ALLOCATION_SLACK + factor * input_size
    assert peak <= limit, f"allocated {peak} bytes for {input_size} bytes of input (limit {limit})"
