# The two set-up commands of the README: `make demo` and `make test`. Both create .venv from
# nothing (torch==2.13.0 first, so pip does not pull a multi-GB CUDA build), then the project.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all smoke man bench clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	@# onnxruntime and onnxruntime-gpu share one import name and break each other; Linux x86_64 now takes
	@# the GPU build, so a venv made before the switch loses the CPU one (both, if both are there) first
	@if [ "$$(uname -sm)" = "Linux x86_64" ] && $(BIN)/pip show --quiet onnxruntime >/dev/null 2>&1; then \
	  $(BIN)/pip uninstall --quiet -y onnxruntime onnxruntime-gpu; fi
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(MAKE) --no-print-directory -j2 -f recipes/demo.mk REID=$(abspath $(BIN)/reid) PYTHON=$(abspath $(BIN)/python)

test: $(STAMP)
	$(BIN)/pytest -q

test-all: $(STAMP)
	$(BIN)/pytest -q -m 'not fullsize'

# every command's main path once on tiny data (CI runs it on a plain `pip install .` venv)
smoke: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH .ci/smoke.sh

man: $(STAMP)
	$(BIN)/python -m reidtools.commands._manpage man

clean:
	rm -rf $(VENV) demo-out
