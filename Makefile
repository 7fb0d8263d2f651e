# graphrec: two commands for a new user.
#   make demo   create .venv, install graphrec (without the test tools), run the whole nightly loop through Airflow
#   make test   create/update .venv, lint (ruff, import-linter layers) and run the whole test suite
#   make test-unit  the same lint and the fast tests only (no Airflow runs, servers or browser): the edit loop
#   make up     the services profile on this machine's PostgreSQL and Redis: Airflow (UI, API,
#               scheduler, DAG processor, triggerer, two Celery workers), MLflow, the service
#   make down   stop exactly what `make up` started
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.graphrec-installed
RUNTIME_STAMP := $(VENV)/.graphrec-runtime

.PHONY: demo test test-unit lint fuzz up down install lock clean-var bench-validation bench-retrieval bench-ranker bench-load bench-drift bench-nightly bench-warm-start bench-train-steps

install: $(STAMP)

# What graphrec needs to run (the demo); the test extras come on top for `make test`.
$(RUNTIME_STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/graphrec demo

# Style (ruff lint and format) and the one-way layers (import-linter, [tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

# Tests marked e2e, services, browser or slow are left out (see pyproject.toml's markers).
test-unit: lint
	$(BIN)/python -m pytest -m "not e2e and not services and not browser and not slow"

# The services profile keeps its own home so it never mixes with the embedded demo's var/.
STACK_HOME ?= var/stack
up: $(RUNTIME_STAMP)
	GRAPHREC_PROFILE=services GRAPHREC_HOME=$${GRAPHREC_HOME:-$(STACK_HOME)} $(BIN)/graphrec services up

down:
	@if test -x $(BIN)/graphrec; then \
		GRAPHREC_PROFILE=services GRAPHREC_HOME=$${GRAPHREC_HOME:-$(STACK_HOME)} $(BIN)/graphrec services down; \
	else echo "nothing to stop: $(VENV) is missing"; fi

# A longer, random soak of the data contract's fuzzing (make test runs a few fixed examples).
FUZZ_EXAMPLES ?= 300
fuzz: $(STAMP)
	GRAPHREC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/validation/test_validation_fuzz.py --hypothesis-show-statistics -q

# Benchmarks print figures and record them under benchmarks/results/.
bench-validation: $(STAMP)
	$(BIN)/python benchmarks/bench_validation.py --rows 1000000

# Gowalla (../shared/datasets/gowalla or DATA=path): popularity, GF-CF, LightGCN for 30 min.
bench-retrieval: $(STAMP)
	$(BIN)/python benchmarks/bench_retrieval.py --models popularity gfcf lightgcn --loss softmax \
		--batch-size 65536 --lr 0.01 --lr-decay 0.97 --eval-every 2 --item-l2-degree-power 1.5 --minutes 30 $(if $(DATASET),--dataset $(DATASET)) $(if $(DATA),--data $(DATA))

# MovieLens 100K (../shared/datasets/ml-100k or DATA=path): retrieval vs retrieval + BST vs popularity.
bench-ranker: $(STAMP)
	$(BIN)/python benchmarks/bench_ranker.py $(if $(DATA),--data $(DATA))
	$(BIN)/python benchmarks/bench_ranker_cost.py

# The service under Locust on loopback (Gowalla-sized catalog; Locust in its own pinned .venv-load).
bench-load: $(STAMP)
	@test -x .venv-load/bin/locust || { $(PYTHON) -m venv .venv-load && .venv-load/bin/python -m pip install --quiet -r benchmarks/requirements-load.txt; }
	$(BIN)/python benchmarks/bench_load.py --locust .venv-load/bin/locust

# The drift loop on the simulator's six scenarios (detection delay, false alerts, emails,
# retrains) and the daily monitor's time on 1M events.
bench-drift: $(STAMP)
	$(BIN)/python benchmarks/bench_drift.py

# The nightly's steps at three simulated sizes (S = the demo's world, M, L = Gowalla-sized):
# wall time and peak memory per step, growth between sizes (SIZES="S M" for fewer).
SIZES ?= S M L
bench-nightly: $(STAMP)
	$(BIN)/python benchmarks/bench_nightly.py --sizes $(SIZES)

# The retriever's full retrain at sizes M and L under 128, 64 and 32 steps an epoch: time and holdout quality.
bench-train-steps: $(STAMP)
	$(BIN)/python benchmarks/bench_train_steps.py

# Warm-started vs full retrain on the simulator and on MovieLens replayed daily.
bench-warm-start: $(STAMP)
	$(BIN)/python benchmarks/bench_warm_start.py

# Regenerate the lock from pyproject's direct pins (needs network access to the registries).
lock:
	rm -rf /tmp/graphrec-lock && $(PYTHON) -m venv /tmp/graphrec-lock
	/tmp/graphrec-lock/bin/python -m pip install --quiet --upgrade pip==25.3
	/tmp/graphrec-lock/bin/python -m pip install --quiet '.[test]'
	{ echo "# Full transitive lock for Python 3.11 (linux x86_64). Regenerate: make lock"; \
	  /tmp/graphrec-lock/bin/python -m pip freeze --exclude graphrec | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.txt

clean-var:
	rm -rf var
