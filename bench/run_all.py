"""Run every benchmark in bench/ and print one summary table of the ratios they measured.

Each benchmark measures its own baseline in the same process run (the machines are shared and
noisy, so only ratios measured side by side mean anything) and returns its figures from main().
"""

from __future__ import annotations

import sys
from pathlib import Path

from _siblings import sibling

HERE = Path(__file__).resolve().parent


def main(selected: list[str]) -> int:
    results: dict[str, dict[str, float]] = {}
    for path in sorted(HERE.glob("bench_*.py")):
        if selected and not any(s in path.stem for s in selected):
            continue
        print(f"\n=== {path.stem} ===", flush=True)
        results[path.stem] = sibling(path.stem).main()
    print("\n=== summary ===")
    for name, figures in results.items():
        for key, value in figures.items():
            print(f"{name:28s} {key:40s} {value:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
