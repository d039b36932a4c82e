"""Load options: each set is declared once, as a frozen dataclass, and checked in one place.

A declaration is a frozen dataclass deriving from ``Options`` whose fields are made by
``option``: a name, a type, a default and a value check::

    @dataclass(frozen=True)
    class WorkerOptions(Options):
        instances: int = option(1, int_at_least(1))
        timeout: float | None = option(None, optional(number_above(0, "seconds")))

Making an instance checks every value (``WorkerOptions(instances=0)`` raises
``OptionError: instances must be an int >= 1, got 0``). ``split_options`` routes the options
given to ``load_neuropod`` to the declarations that accept them, and rejects the others with one
message format, before anything is loaded or started. This module imports no framework, so
declarations can be checked by an application that runs the model elsewhere (a worker, a server).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from neuropod.errors import OptionError


@dataclass(frozen=True)
class Check:
    """A value check: what is expected, in words, and a test of a value.

    Args:
        expected: completes ``"NAME must be ..."``, e.g. ``"an int >= 1"``.
        accepts: whether a value is valid.
    """

    expected: str
    accepts: Callable[[Any], bool]

    def __call__(self, name: str, value: Any, error: type[Exception] = OptionError) -> None:
        """Raise ``error`` naming ``name``, what it expects and what it got, unless valid.

        ``error`` is the caller's exception for a bad argument where that is not an option
        (``SpecError`` for a packager's argument, ``CommandError`` for a command line).
        """
        if not self.accepts(value):
            raise error(f"{name} must be {self.expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def int_at_least(minimum: int, note: str = "") -> Check:
    """An int (not a bool) ``>= minimum``; ``note`` is added to the message, e.g. ``"(0: the default)"``."""
    return Check(f"an int >= {minimum}" + (f" {note}" if note else ""), lambda v: _is_int(v) and v >= minimum)


def number_above(minimum: float, unit: str = "") -> Check:
    """A number (int or float, not a bool) ``> minimum``, e.g. a number of ``unit="seconds"``."""
    what = f"a number of {unit}" if unit else "a number"
    return Check(f"{what} > {minimum}", lambda v: _is_number(v) and v > minimum)


def number_at_least(minimum: float, unit: str = "") -> Check:
    """A number (int or float, not a bool) ``>= minimum``."""
    what = f"a number of {unit}" if unit else "a number"
    return Check(f"{what} >= {minimum}", lambda v: _is_number(v) and v >= minimum)


BOOLEAN = Check("True or False", lambda v: isinstance(v, bool))


def one_of(values: Collection[Any]) -> Check:
    """One of ``values``."""
    return Check(f"one of {', '.join(map(repr, values))}", lambda v: v in values)


def optional(check: Check) -> Check:
    """``None``, or a value that passes ``check``."""
    return Check(f"None or {check.expected}", lambda v: v is None or check.accepts(v))


def option(default: Any, check: Check | None = None) -> Any:
    """A field of a declaration: its default and the check every value given must pass."""
    return dataclasses.field(default=default, metadata={"check": check})


class Options:
    """Base of the option declarations: frozen dataclasses whose fields are made by ``option``.

    ``where`` names the declaration's owner in messages about names it does not take
    (``"platform 'onnx'"``).
    """

    where: ClassVar[str] = "this model"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            check = field.metadata.get("check")
            if check is not None:
                check(field.name, getattr(self, field.name))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def parse(cls, given: Mapping[str, Any]) -> Any:
        """An instance made of ``given``, every name and value checked.

        Raises:
            OptionError: a name is not declared, or a value fails its check.
        """
        unknown = sorted(set(given) - set(cls.names()))
        if unknown:
            raise unknown_options(unknown, cls.where, cls.names())
        return cls(**given)


@dataclass(frozen=True)
class NoOptions(Options):
    """The declaration of a backend without load options of its own."""


def declare(name: str, names: Sequence[str], where: str) -> type[Options]:
    """A declaration of untyped options, for a backend that names its options and nothing more.

    Args:
        name: the declaration's class name.
        names: the option names, each defaulting to ``None`` and checked by its backend.
        where: the declaration's owner in messages.

    Returns:
        The declaration class.
    """
    fields = [(option_name, Any, option(None)) for option_name in names]
    declaration: type[Options] = dataclasses.make_dataclass(
        name, fields, bases=(Options,), frozen=True, namespace={"where": where}
    )
    return declaration


def split_options(
    given: Mapping[str, Any],
    declarations: Sequence[type[Options]],
    where: str,
    *,
    also_accepted: Sequence[str] = (),
    hints: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Route ``given`` to the declarations that accept each option, checking every name and value.

    Args:
        given: the options passed to ``load_neuropod``.
        declarations: every declaration that applies to this load, in the order the message
            about unknown options lists their names.
        where: what the options are for, e.g. ``"platform 'onnx'"``.
        also_accepted: names checked elsewhere, listed first among the accepted options.
        hints: option name -> why it is not accepted here (added to the message about it).

    Returns:
        For each declaration, the options given that it declares (defaults are left to it).

    Raises:
        OptionError: an option no declaration accepts, or a value that fails its check.
    """
    accepted = [name for declaration in declarations for name in declaration.names()]
    unknown = sorted(set(given).difference(accepted))
    if unknown:
        error = unknown_options(unknown, where, [*also_accepted, *accepted])
        notes = [hints[name] for name in unknown if hints and name in hints]
        if notes:
            error = OptionError(f"{error} ({'; '.join(notes)})")
        raise error
    routed = []
    for declaration in declarations:
        mine = {name: given[name] for name in declaration.names() if name in given}
        declaration(**mine)  # checks the values
        routed.append(mine)
    return routed


def unknown_options(unknown: Sequence[str], where: str, accepted: Sequence[str]) -> OptionError:
    """The one message about options nobody takes: what was given, for what, and what is accepted."""
    return OptionError(
        f"load_neuropod() got unknown option(s) {', '.join(map(repr, unknown))} for {where}; "
        f"accepted options: {', '.join(accepted) or 'none'}"
    )


VISIBLE_GPU = Check(
    "None (CPU) or a GPU index >= 0", lambda v: v is None or (_is_int(v) and v >= 0)
)
