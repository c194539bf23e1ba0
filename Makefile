# The two commands a user needs: `make train` and `make test`. Everything else is a helper they call.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test data tools venv clean

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

# Programs the tests drive (skipped where they cannot be installed): headless Chromium renders report.html; zsh
# loads the completion script `visiontrain completion zsh` writes.
tools:
	@missing=""; [ -x /usr/bin/chromium ] || missing="chromium"; command -v zsh >/dev/null || missing="$$missing zsh"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq $$missing || (apt-get update -qq && apt-get install -y -qq $$missing)) >/dev/null; \
	fi

train: $(STAMP) data
	$(BIN)/visiontrain train $(ARGS)

test: $(STAMP) data tools
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder $(ARGS)

clean:
	rm -rf $(VENV)
