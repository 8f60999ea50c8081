# Two commands on a fresh machine: `make train` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Loopback everywhere on one machine: Spark's own sockets and the TFoS/TF ones (see README, Security).
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)
export TF_USE_LEGACY_KERAS := 1
MASTER ?= local[*]
ARGS ?=

.PHONY: venv train test test-fast test-unit lint clean

venv: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools<82" wheel
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/spark-submit --master '$(MASTER)' --properties-file conf/spark-defaults.conf jobs/train.py --input-mode spark $(ARGS)

# The full suite, in two steps: the unit tier in UNIT_PROCESSES pytest processes (its tests mostly wait on
# sockets and deadlines: 4 at a time take 42 s instead of 87), then every tier that starts Spark in
# TEST_PROCESSES. A Spark test leaves about a third of the 2 cores idle (JVM start-up, TFoS and Spark
# waiting on each other, fault-detection timeouts); two at a time keep them ~90% busy. Tests that share a
# module fixture, and the multi-host tests, stay in one process (tests/conftest.py, parallel_group). The
# 12 slowest tests are listed at the end: where the time goes on the machine that ran it.
UNIT_PROCESSES ?= 4
TEST_PROCESSES ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(UNIT_PROCESSES) tests/unit
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup --durations=12 tests --ignore=tests/unit

# The edit-test loop: unit tests and one spark-submit run on local[*] (about 2-3 minutes on 2 cores).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/smoke

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check tfos_facecnn jobs tests bench

clean:
	rm -rf output .pytest_cache
