# lambda-lab: the two commands are `make demo` and `make test`; both install everything.
# Downloads are cached under ~/.cache (pip, Maven artifacts, Trino), so a warm run is short.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LL := $(BIN)/lambdalab
APT_PACKAGES := redis-server maven openjdk-17-jdk-headless chromium docker-compose kcat
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip

.PHONY: deps apt venv fetch up down status test test-unit lint demo bench drills clean up-cluster down-cluster status-cluster drills-cluster test-cluster

deps: apt venv fetch  ## install everything: Debian packages, Python packages, JVM artifacts

apt:  ## Debian packages (redis-server, Maven, JDK 17, chromium for the dashboard test, kcat: a non-Python Kafka client for the tests)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; fi; \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

fetch: venv  ## JVM artifacts from Maven Central (no-op when cached)
	$(LL) stack fetch

up: deps  ## start the local stack and wait until every service is healthy
	$(LL) stack up

down: down-cluster
	@test -x $(LL) && $(LL) stack down || true

# The multi-node stack on loopback (3 Kafka brokers, NameNode + 2 DataNodes, Spark master +
# 2 workers, Redis Cluster, Trino, luigid) beside the local stack: settings profile
# lambdalab/profiles/cluster.env, state in .lambdalab/cluster (docs/operations.md).
up-cluster: deps  ## start the cluster and wait until every node is healthy
	$(LL) stack up --cluster

down-cluster:
	@test -x $(LL) && $(LL) stack down --cluster || true

status-cluster:
	$(LL) stack status --cluster

drills-cluster: up-cluster  ## the cluster's fault drills (a partition leader, a DataNode, a Spark worker SIGKILLed); table into docs/reliability.md
	$(BIN)/pytest -m cluster_drill -p no:cacheprovider -s; status=$$?; \
	$(BIN)/python -m tests.drills.report cluster && exit $$status

status:
	$(LL) stack status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy lambdalab views ingest batch speed serving lab infra

test-unit: venv
	$(BIN)/pytest -m unit -q

test: up lint  ## everything: install, stack up, lint, every test against the real services, then the cluster test
	$(BIN)/pytest -m "unit or integration or e2e" -p no:cacheprovider; status=$$?; \
	$(MAKE) --no-print-directory test-cluster || status=1; exit $$status

# The cluster comes up only for its own short test and goes down after it, so its ~15 idle
# JVMs do not compete with the main suite for the cores.
test-cluster: up-cluster  ## the short cluster test (make test runs it last), then the cluster stops
	$(BIN)/pytest -m cluster -p no:cacheprovider; status=$$?; $(LL) stack down --cluster; exit $$status

demo: up  ## the whole pipeline end to end on the local stack
	$(LL) demo

bench: up
	$(BIN)/python -m bench

drills: up  ## every fault drill, full repetitions (stops Kafka and the DataNode, flushes Redis); table into docs/reliability.md
	LAMBDALAB_DRILLS=full $(BIN)/pytest -m drill -p no:cacheprovider; status=$$?; \
	$(BIN)/python -m tests.drills.report && exit $$status

# The docker-compose demo cluster (infra/docker/cluster.sh): every image built here FROM one
# base, host ports LAMBDALAB_COMPOSE_*_PORT on 127.0.0.1, so it runs beside the local stack.
.PHONY: compose-up compose-test compose-down
compose-up:  ## the compose cluster: Docker daemon if none runs, base image, build (cached), up, wait healthy
	infra/docker/cluster.sh up

compose-test: venv  ## compose-up, then the end-to-end test from the host through the published ports
	infra/docker/cluster.sh test

compose-down:  ## remove the cluster's containers and networks; VOLUMES=1 removes its data too
	infra/docker/cluster.sh down $(if $(VOLUMES),--volumes)

clean: down
	rm -rf .lambdalab
