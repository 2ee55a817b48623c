"""Loading a sibling file of bench/ as a module, once per process, by path.

bench/ is not a package: each benchmark runs as a script (and run_all.py loads them by path), so
a benchmark that reuses another's helpers (the shared UB1 set-up, the private PostgreSQL server,
the gRPC submit harness) loads it through here, registered under its file name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def sibling(name: str) -> ModuleType:
    """bench/NAME.py as a module (the same object on every call)."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
