"""The reference models on the python platform: a ``get_model`` entrypoint in packaged code."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from neuropod.packagers import create_python_neuropod

ADDITION = """
    def get_model(data_dir):
        def addition(x, y=None):
            return {"out": x.copy() if y is None else x + y}

        return addition
"""

STRINGS = """
    import numpy as np


    def get_model(data_dir):
        def strings(s):
            return {"out": np.array(["<" + str(word) + ">" for word in s], dtype=str).reshape(len(s))}

        return strings
"""

BYTES = """
    import numpy as np


    def get_model(data_dir):
        def wrap(s):
            out = np.empty(s.shape, dtype=object)
            out[...] = [b"<" + item + b">" for item in s]
            return {"out": out}

        return wrap
"""


def write_code(workdir: Path, package: str, source: str) -> list[dict[str, Any]]:
    """Writes ``source`` as the package ``package`` under ``workdir/code``.

    Returns:
        the ``code_path_spec`` that ships it.
    """
    code = workdir / "code" / package
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(textwrap.dedent(source))
    return [{"python_root": str(workdir / "code"), "dirs_to_package": [package]}]


def build_addition(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The addition model as plain numpy code."""
    create_python_neuropod(
        neuropod_path=path,
        model_name=path.name,
        code_path_spec=write_code(workdir, "addition_model", ADDITION),
        entrypoint_package="addition_model",
        entrypoint="get_model",
        **kwargs,
    )


def build_strings(path: Path, workdir: Path, **kwargs: Any) -> None:
    """The strings model as plain numpy code."""
    create_python_neuropod(
        neuropod_path=path,
        model_name=path.name,
        code_path_spec=write_code(workdir, "strings_model", STRINGS),
        entrypoint_package="strings_model",
        entrypoint="get_model",
        **kwargs,
    )
