# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean corpus chromium bench

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: $(PYTHON) not found" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/replaydiff demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

# Re-record the bundled sample corpus through the recorder (see replaydiff/demo/traffic.py), then the shops'
# calls to inventory for that corpus, which `replaydiff demo --mock` answers from (replaydiff/demo/upstream.py),
# and the gRPC catalog's corpus (replaydiff/demo/catalog_traffic.py).
corpus: $(STAMP)
	$(BIN)/python -m replaydiff.demo.traffic -o replaydiff/demo/demo-shop.jsonl.zst
	$(BIN)/python -m replaydiff.demo.upstream replaydiff/demo/demo-shop.upstream.jsonl.zst
	$(BIN)/python -m replaydiff.demo.catalog_traffic -o replaydiff/demo/demo-catalog.jsonl.zst

# The HTML report's rendering test needs a headless browser; it skips with a reason when this is missing.
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }

# Replay benchmarks (bench/README.md): ratios against locust and wrk on one local server, and HTTP/2 against h2load
# (nghttpd its fastest server); wrk, h2load and nghttpd are Debian packages.
bench: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	@command -v h2load >/dev/null && command -v nghttpd >/dev/null || \
		{ apt-get update && apt-get install -y nghttp2-client nghttp2-server; }
	$(BIN)/python bench/replay_throughput.py
	$(BIN)/python bench/replay_fidelity.py
	$(BIN)/python bench/replay_memory.py
	$(BIN)/python bench/http2_replay.py

clean:
	rm -rf $(VENV) build *.egg-info
