# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean corpus

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
	$(BIN)/python -m pytest -q

# Re-record the bundled sample corpus through the recorder (see replaydiff/demo/traffic.py).
corpus: $(STAMP)
	$(BIN)/python -m replaydiff.demo.traffic -o corpora/samples/demo-shop.jsonl.zst

clean:
	rm -rf $(VENV) build *.egg-info
