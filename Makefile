# `make run`: MiniMMEB end to end (data, stages 0-3, evaluation, report) in runs/mini.
# `make test`: the test suite. Both install what is missing first (scripts/install.sh).
.PHONY: run test lint

.venv/.installed: pyproject.toml scripts/install.sh
	./scripts/install.sh

run: .venv/.installed
	.venv/bin/cocoa run mini --out runs/mini

test: .venv/.installed
	.venv/bin/pytest

lint: .venv/.installed
	.venv/bin/ruff check .
