# The two set-up commands of the README. Each creates .venv when missing and installs the project
# through constraints.txt, which pins torch to the CPU build available on this machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-avx2 lint clean-venv

# The tests whose paths depend on the CPU class, run again as an AVX2-only CPU runs them (oneDNN and ATen limited
# to AVX2: no native bf16, fused bf16 kernels off), so that every machine checks both classes (docs/hardware.md).
CPU_CLASS_TESTS := tests/test_hardware.py tests/models/test_trunks.py tests/train/test_bf16.py \
	tests/cli/test_demo_predict_export.py tests/bench/test_bench.py

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ubernet demo $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest $(ARGS)
	$(MAKE) --no-print-directory test-avx2

test-avx2: $(STAMP)
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest $(CPU_CLASS_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
