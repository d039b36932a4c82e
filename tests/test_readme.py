"""The README's quick start runs as written and prints what the README says it prints."""

import contextlib
import io
import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytest.importorskip("torch")


def _python_block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_quick_start_runs_and_reports_the_symbol_mismatch(tmp_path):
    # A real file, because torch.jit.script reads the source of the classes it compiles.
    script = tmp_path / "quick_start.py"
    script.write_text(_python_block_after("## Quick start"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(str(script), run_name="readme")
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("addition_model torchscript [{'name': 'x', 'dtype': 'float32'")
    assert "[[1. 2. 3.]" in printed.getvalue()
    promised = re.search(r"The last call prints `(.*?)`\.", README.read_text(), re.S).group(1)
    assert lines[-1] == " ".join(promised.split())
