# Each target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
IMGCLS := $(VENV)/bin/imgcls
DEMO   := -c configs/local.yaml

# torch on glibc malloc measured 3x slower here; use tcmalloc when Debian's libtcmalloc-minimal4 is installed.
export LD_PRELOAD := $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)

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
	$(PY) bench/bench_local.py
	$(PY) bench/bench_compare.py

lint: $(VENV)/.stamp-all+dev
	$(PY) -m ruff check src tests bench

clean:
	rm -rf .imgcls build *.egg-info
