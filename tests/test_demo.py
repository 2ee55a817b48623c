"""`make demo` runs the demo module; it checks its own outcomes and exits non-zero on any miss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_every_exchange_and_its_checks_hold(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout
    assert done.stdout.count("[ok]") >= 17
    assert "demo ok" in done.stdout
    # The one-shot commands it runs print their results and errors once: no INFO log lines
    # repeating them (the UB2 refusal used to log each finding it also printed).
    assert " INFO gateway." not in done.stdout + done.stderr
