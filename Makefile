# Every target sets itself up from a clean clone: venv, dependencies, generated protobuf code,
# and the Debian packages the tests need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTO_OUT := src/gateway/_proto
PROTOS := $(wildcard proto/gnc/v1/*.proto)
DEBIAN_PACKAGES := xmlsec1

.PHONY: demo test lint bench setup proto system-packages clean

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

test: setup
	$(PY) -m pytest -n 2 tests

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(PROTO_OUT) build *.egg-info src/*.egg-info
