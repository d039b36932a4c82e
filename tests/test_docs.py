"""The documentation: the site builds strictly, and the python examples of the README and docs/ run.

Every ```` ```python ```` block of a page runs, in order, as one script in a fresh folder (so a
page's later blocks reuse what its first ones built). A block preceded by the line
``<!-- no-run -->`` is shown but not run: use it only for what cannot run here (a cluster, a
GPU, a file the reader has). A page whose blocks import a framework that is not installed is
skipped, naming it.
"""

import contextlib
import io
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuropod import registry

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
_IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", re.M)
#: Imports that may be missing; anything else a page imports must be installed.
_OPTIONAL = {
    *("torch", "tensorflow", "keras", "jax", "onnx", "onnxruntime"),
    *("ray", "pyarrow", "tritonclient", "grpc"),
}


def python_blocks(text: str) -> list[str]:
    """The python blocks of a markdown text that are to run, in order."""
    return [
        match.group(1)
        for match in _BLOCK.finditer(text)
        if not text[: match.start()].rstrip().endswith(NO_RUN)
    ]


def run_blocks(blocks: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the blocks as one script in ``folder``; what they printed."""
    for module in sorted({name for block in blocks for name in _IMPORT.findall(block)} & _OPTIONAL):
        pytest.importorskip(module)
    # A real file, because torch.jit.script reads the source of the classes it compiles.
    script = folder / "example.py"
    script.write_text("\n".join(blocks))
    monkeypatch.chdir(folder)
    # A page may register a backend; the rest of the suite sees the registry as it was.
    for table in ("_registered", "_resolved", "_declared"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(str(script), run_name="docs_example")
    return printed.getvalue()


PAGES = sorted(page for page in DOCS.rglob("*.md") if python_blocks(page.read_text()))


def test_the_site_builds_strictly(tmp_path):
    # --strict: a broken link, a missing anchor, an unknown API reference or a page missing
    # from the nav fails the build.
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert (site / "cli" / "index.html").read_text().count("neuropod serve") > 1
    assert "load_neuropod" in (site / "api" / "index.html").read_text()


def test_a_no_run_marker_skips_only_the_next_block():
    text = "```python\na = 1\n```\n\n<!-- no-run -->\n```python\nb = 2\n```\n```python\nc = 3\n```\n"
    assert python_blocks(text) == ["a = 1\n", "c = 3\n"]


# Saving a Keras model with weights calls np.array(variable), and Keras 3.15's variables implement
# __array__ without numpy 2's `copy` keyword (as in tests/backends/test_keras.py).
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning:keras"
)
@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(DOCS)) for page in PAGES])
def test_the_examples_of_a_page_run(page, tmp_path, monkeypatch):
    run_blocks(python_blocks(page.read_text()), tmp_path, monkeypatch)


def test_the_readme_quick_start_runs_and_reports_the_symbol_mismatch(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    printed = run_blocks(python_blocks(section)[:1], tmp_path, monkeypatch)
    lines = printed.splitlines()
    assert lines[0].startswith("addition_model torchscript [{'name': 'x', 'dtype': 'float32'")
    assert "[[1. 2. 3.]" in printed
    promised = re.search(r"The last call prints `(.*?)`\.", text, re.S).group(1)
    assert lines[-1] == " ".join(promised.split())


# The clients of docs/other-languages.md, compiled and run against a real server where the
# machine has the compiler.
CLIENTS = ROOT / "examples" / "clients"


@pytest.fixture(scope="module")
def addition_server(tmp_path_factory):
    pytest.importorskip("uvicorn")
    from neuropod.packagers import create_python_neuropod
    from neuropod.serving import Server

    work = tmp_path_factory.mktemp("clients")
    (work / "code" / "adder").mkdir(parents=True)
    (work / "code" / "adder" / "__init__.py").write_text(
        "def get_model(data_dir):\n    return lambda x, y: {'out': x + y}\n"
    )
    spec = [{"name": name, "dtype": "float32", "shape": ("batch", 3)} for name in ("x", "y")]
    create_python_neuropod(
        neuropod_path=work / "addition_model.zip",
        model_name="addition_model",
        input_spec=spec,
        output_spec=[{"name": "out", "dtype": "float32", "shape": ("batch", 3)}],
        code_path_spec=[{"python_root": str(work / "code"), "dirs_to_package": ["adder"]}],
        entrypoint_package="adder",
        entrypoint="get_model",
    )
    with Server([work / "addition_model.zip"], http_port=0, grpc_port=None, auth_token="t0ken") as server:
        yield server


def _compiler(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed, so the example client in {name}'s language cannot be built")
    return found


def _client_env() -> dict[str, str]:
    return {**os.environ, "NEUROPOD_SERVE_TOKEN": "t0ken"}


def test_the_java_client_example_calls_a_served_model(addition_server, tmp_path):
    javac = _compiler("javac")
    subprocess.run([javac, "-d", str(tmp_path), str(CLIENTS / "InferClient.java")], check=True, timeout=120)
    done = subprocess.run(
        [_compiler("java"), "-cp", str(tmp_path), "InferClient", addition_server.http_url, "addition_model"],
        capture_output=True, text=True, timeout=60, env=_client_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "out = [11.0,22.0,33.0]"
    wrong = subprocess.run(
        [_compiler("java"), "-cp", str(tmp_path), "InferClient", addition_server.http_url, "no_such_model"],
        capture_output=True, text=True, timeout=60, env=_client_env(),
    )  # fmt: skip
    assert wrong.returncode == 1 and "HTTP 404" in wrong.stderr


def test_the_cpp_client_example_calls_a_served_model(addition_server, tmp_path):
    binary = tmp_path / "infer_client"
    subprocess.run(
        [_compiler("g++"), "-std=c++17", "-O1", "-o", str(binary), str(CLIENTS / "infer_client.cpp")],
        check=True, timeout=120,
    )  # fmt: skip
    port = str(addition_server.http_port)
    done = subprocess.run(
        [str(binary), "127.0.0.1", port, "addition_model"],
        capture_output=True, text=True, timeout=60, env=_client_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"data":[11.0,22.0,33.0]' in done.stdout
    unauthenticated = subprocess.run(
        [str(binary), "127.0.0.1", port, "addition_model"], capture_output=True, text=True, timeout=60
    )
    assert unauthenticated.returncode == 1 and "401" in unauthenticated.stderr


def test_the_readme_links_lead_to_pages_and_anchors_of_the_site():
    # GitHub renders the README with relative links; mkdocs does not check it.
    text = README.read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", text)
    assert len(links) > 20
    for target, anchor in links:
        page = ROOT / target
        assert page.is_file(), f"README links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to {target}#{anchor}, which has no such heading"
