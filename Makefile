# Nodeloom: every target bootstraps .venv on a fresh machine first.
# torch goes in FIRST and pinned (the CPU build lies on local disk); an unpinned torch pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GRAPH ?= graphs/txt2img.json
OUT ?= output

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test edit lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m app run $(GRAPH) -o $(OUT)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check app nodes tests tools bench
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

edit: $(STAMP)
	$(PY) -m app edit $(GRAPH)

bench: $(STAMP)
	$(PY) bench/engine_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
