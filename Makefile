# Every target sets itself up from a clean clone: venv, dependencies, generated protobuf code,
# and the Debian packages the tests need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTO_OUT := src/gateway/_proto
PROTOS := $(wildcard proto/gnc/v1/*.proto)
DEBIAN_PACKAGES := xmlsec1 postgresql
# A private PostgreSQL cluster for the tests: its own data directory, loopback only, trust auth.
PG_DIR := $(CURDIR)/.pg
PG_PORT ?= 55432

.PHONY: demo test lint bench setup proto system-packages clean pg-start pg-stop

setup: $(STAMP) proto system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

proto: $(STAMP) $(PROTO_OUT)/.stamp

$(PROTO_OUT)/.stamp: $(PROTOS) $(STAMP)
	mkdir -p $(PROTO_OUT)/gnc/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
	    --grpc_python_out=$(PROTO_OUT) $(PROTOS)
	touch $(PROTO_OUT)/__init__.py $(PROTO_OUT)/gnc/__init__.py $(PROTO_OUT)/gnc/v1/__init__.py
	sed -i 's/^from gnc\.v1 import/from gateway._proto.gnc.v1 import/' $(PROTO_OUT)/gnc/v1/*.py
	touch $@

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: setup
	$(PY) -m gateway.demo

# Starts the test PostgreSQL server (unless one already runs) and stops it afterwards, also
# when the tests fail; pytest's exit status is the recipe's.
test: setup
	@started=""; \
	if [ ! -f $(PG_DIR)/data/postmaster.pid ]; then \
	    $(MAKE) --no-print-directory pg-start || exit 1; started=1; fi; \
	if [ -n "$$started" ]; then trap '$(MAKE) --no-print-directory pg-stop' EXIT; fi; \
	GNC_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$$(cat $(PG_DIR)/port)/postgres" \
	    $(PY) -m pytest -n 2 tests

# The cluster runs as the postgres OS user (the server refuses root), on 127.0.0.1 only, no Unix
# socket, on PG_PORT or (if taken) a free port; the port is written to .pg/port.
pg-start: system-packages
	@set -e; bin=$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); \
	run=""; mkdir -p $(PG_DIR); \
	if [ "$$(id -u)" = 0 ]; then chown postgres: $(PG_DIR); run="runuser -u postgres --"; fi; \
	if [ ! -f $(PG_DIR)/data/PG_VERSION ]; then \
	    $$run $$bin/initdb -D $(PG_DIR)/data -U postgres --auth=trust -E UTF8 --no-locale \
	        > $(PG_DIR)/initdb.log; fi; \
	if $$run $$bin/pg_ctl -D $(PG_DIR)/data status > /dev/null 2>&1; then \
	    echo "test PostgreSQL already running on port $$(cat $(PG_DIR)/port)"; exit 0; fi; \
	port=$$($(PYTHON) -c 'import socket, sys; s = socket.socket(); \
	    p = int(sys.argv[1]); r = s.connect_ex(("127.0.0.1", p)); s.close(); \
	    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
	    s.bind(("127.0.0.1", p if r else 0)); print(s.getsockname()[1])' $(PG_PORT)); \
	$$run $$bin/pg_ctl -D $(PG_DIR)/data -l $(PG_DIR)/server.log -w -s \
	    -o "-c listen_addresses=127.0.0.1 -c unix_socket_directories= -p $$port" start; \
	echo $$port > $(PG_DIR)/port; echo "test PostgreSQL running on 127.0.0.1:$$port"

pg-stop:
	@bin=$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); \
	run=""; if [ "$$(id -u)" = 0 ]; then run="runuser -u postgres --"; fi; \
	if [ -n "$$bin" ] && [ -f $(PG_DIR)/data/postmaster.pid ]; then \
	    $$run $$bin/pg_ctl -D $(PG_DIR)/data -m fast -w -s stop; \
	    echo "test PostgreSQL stopped"; fi

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(PROTO_OUT) build *.egg-info src/*.egg-info
