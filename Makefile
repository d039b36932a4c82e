# The two set-up commands of the README: `make demo` and `make test`.
# Each installs what it needs into .venv first (fast when already installed).

PYTHON := .venv/bin/python

.PHONY: demo test bench setup lint docs

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(PYTHON) examples/demo.py

test: setup
	$(PYTHON) -m pytest

bench: setup
	$(PYTHON) bench/overhead.py

docs: setup
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs serve

lint: setup
	.venv/bin/ruff check src tests bench examples scripts
	.venv/bin/mypy
