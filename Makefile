# Each target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
IMGCLS := $(VENV)/bin/imgcls
DEMO   := -c configs/local.yaml

.PHONY: install demo test bench lint clean

# The stamp files make set-up idempotent: pip runs again only when pyproject.toml changes.
$(VENV)/.stamp-%: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[$(subst +,$(comma),$*)]'
	@touch $@

comma := ,

install: $(VENV)/.stamp-all+dev

demo: $(VENV)/.stamp-local
	$(IMGCLS) validate $(DEMO)
	$(IMGCLS) run $(DEMO)
	$(IMGCLS) predict $(DEMO) --format table examples/flowers-sample/test/roses
	$(IMGCLS) down $(DEMO)

test: $(VENV)/.stamp-all+dev
	$(PY) -m pytest -q

bench: $(VENV)/.stamp-all+dev
	$(PY) bench/bench_startup.py
	$(PY) bench/bench_allocator.py
	$(PY) bench/bench_scoring.py
	$(PY) bench/bench_local.py
	$(PY) bench/bench_compare.py

lint: $(VENV)/.stamp-all+dev
	$(PY) -m ruff check src tests bench

clean:
	rm -rf .imgcls build *.egg-info
