# The two commands of the README: `make demo` and `make test`.
# Each one sets everything up (a virtual environment in .venv) and then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.psnmf-installed

.PHONY: demo test docs lint setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/psnmf demo

test: $(STAMP)
	@# headless Chromium renders report.html in a test (Debian's package; root installs it)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed (needs root: apt-get install chromium); the report rendering test skips outside CI"
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

# the Sphinx site with its gallery (the examples run): docs/_build/html/index.html
docs: $(STAMP)
	rm -rf docs/_build docs/generated docs/auto_examples docs/sg_execution_times.rst
	MPLBACKEND=Agg $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
