"""The ``Closing`` mixin: ``with`` yields the object and closes it, also on an exception."""

import pytest

from neuropod.closing import Closing


class Resource(Closing):
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_with_yields_the_object_and_closes_it() -> None:
    resource = Resource()
    with resource as entered:
        assert entered is resource
        assert resource.closed == 0
    assert resource.closed == 1


def test_an_exception_closes_and_propagates() -> None:
    resource = Resource()
    with pytest.raises(KeyError), resource:
        raise KeyError("x")
    assert resource.closed == 1


def test_a_subclass_without_close_says_so() -> None:
    with pytest.raises(NotImplementedError, match="Bare must define close"):
        type("Bare", (Closing,), {})().close()
