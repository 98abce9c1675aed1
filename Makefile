# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test lint mypy-all format bench package clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.local-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.local-installed

.env:
	cp .env.example .env

# Fresh machine: install, migrate, seed demo data, serve every function on 127.0.0.1:$(PORT).
run: $(VENV)/.local-installed .env
	$(BIN)/privacy-functions migrate
	$(BIN)/privacy-functions seed-demo
	$(BIN)/privacy-functions serve --port $(PORT)

# The whole suite, on SQLite and on PostgreSQL (TEST_POSTGRES_URL, default 127.0.0.1:5432/test).
# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: otherwise every worker and subprocess
# compiles the sources and pytest rewrites every test module's asserts again at each run. Work stealing: a worker
# that runs out takes tests queued for the other, rather than idling while it finishes its share.
test: lint
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n 2 --dist worksteal -p no:cacheprovider

# Layers, lint and types (.pre-commit-config.yaml runs the same). functions/<name>/ folders have hyphens and
# each holds a `handler` module: mypy checks them one folder at a time (shared/ comes from its cache).
lint: $(VENV)/.dev-installed
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory mypy-all

mypy-all:
	$(BIN)/mypy shared
	status=0; for dir in functions/*/; do $(BIN)/mypy "$$dir" || status=1; done; exit $$status

# Formats the code with ruff's formatter ([tool.ruff.format]); `make lint` checks it is formatted.
format: $(VENV)/.dev-installed
	$(BIN)/ruff format .

# Benchmarks: print figures, assert nothing about time.
bench: $(VENV)/.dev-installed
	$(BIN)/pytest -q -s -p no:cacheprovider tests/perf

# The deployable zip's dependencies: musl wheels for Scaleway's Alpine runtime (musl 1.2 runs musllinux_1_1 wheels too;
# package-constraints.txt holds back the wheels whose libraries musl 1.2.3 cannot relocate),
# pruned to what the functions use, debug info stripped, compiled for CPython 3.11 (shared/local/packaging.py).
# Prints the zip's size as serverless will build it.
package: $(VENV)/.local-installed
	rm -rf package
	$(BIN)/python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > .package-requirements.txt
	$(BIN)/pip install --quiet --no-compile --target package --platform musllinux_1_2_x86_64 --platform musllinux_1_1_x86_64 \
		--python-version 3.11 --implementation cp --only-binary=:all: -r .package-requirements.txt -c package-constraints.txt
	$(BIN)/pip install --quiet --no-compile --target package --upgrade --no-deps --platform musllinux_1_1_x86_64 \
		--python-version 3.11 --implementation cp --only-binary=:all: -r package-constraints.txt
	rm -f .package-requirements.txt
	$(BIN)/python -m shared.local.packaging build package

clean:
	rm -rf $(VENV) .local package .pytest_cache .mypy_cache .ruff_cache
