# `make run`: MiniMMEB end to end (data, stages 0-3, evaluation, report) in runs/mini.
# `make test`: the test suite. Both install what is missing first (scripts/install.sh).
.PHONY: run test test-quick lint

# CPU math kernels pinned to AVX2 (ATen, MKL, oneDNN), so that `make run` repeats bit for bit
# within one CPU family (not across families: docs/results.md; benchmarks/experiments/cpu_determinism.py).
CPU_PINS := ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 DNNL_MAX_CPU_ISA=AVX2

.venv/.installed: pyproject.toml scripts/install.sh
	./scripts/install.sh

run: .venv/.installed
	$(CPU_PINS) .venv/bin/cocoa run mini --out runs/mini

test: .venv/.installed
	.venv/bin/pytest

# The quick loop while developing: everything but the multi-process and kill-and-resume tests.
test-quick: .venv/.installed
	.venv/bin/pytest -m "not slow"

lint: .venv/.installed
	.venv/bin/ruff check .
