# The README's two commands. Both create .venv when missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned first so that no dependency resolves a newer (CUDA) build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e .
	touch $@

# The test suite's extras (pytest, OpenVINO and NNCF for the runtime tests) on top; the demo needs none.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

DEMO_RUN := runs/quickstart

# A second `make demo` continues (or just reports) the first run instead of refusing to overwrite it.
demo: install
	@if [ -f $(DEMO_RUN)/study.db ]; then \
		$(BIN)/prunetune search --resume $(DEMO_RUN); \
	else \
		$(BIN)/prunetune search quickstart --output $(DEMO_RUN); \
	fi

# Most tests wait on processes (Ray workers, clusters, subprocesses) more than they compute, so two
# run at once; the tests marked `serial` time or meter the machine and run afterwards, alone.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
TEST_WORKERS ?= 2

test: $(VENV)/.installed-test
	@status=0; \
	$(PYTEST) -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(PYTEST_ARGS) || status=$$?; \
	$(PYTEST) -m serial $(PYTEST_ARGS) || status=$$?; \
	exit $$status

clean:
	rm -rf $(VENV) build *.egg-info
