"""UB1 full sync with both gateways on PostgreSQL against both on SQLite files (issue 7).

The exchange of bench_ub1_full_sync / bench_ub1_durability (EU service, outbox and delivery
worker here; the US gateway's gRPC server, node and store in a child process; gateways from
config files with the test PKI and the US profile), run in one run on 50,000 records the US
profile receives, with the stores:

(a) SQLite: each side on its configured SQLite file (WAL, synchronous=FULL);
(b) PostgreSQL: each side on a database of its own on one PostgreSQL server (the one
    GNC_BENCH_POSTGRES_URL names, or a private cluster this benchmark starts and stops: see
    _pg_server), default settings (fsync on, synchronous_commit on): as durable as (a).

Timed for each, as `gncgw serve` runs it: ``full_sync(US)`` (parts of 1,000 records) while the
delivery worker sends every part and the end over the gRPC stream, until every receipt is
verified and stored; the US list's count and summary are then checked against EU's. The
order alternates between rounds (--rounds, default 2); the best rate of each is kept.

Target: PostgreSQL / SQLite >= 0.5 (one node on PostgreSQL reaches half of one on SQLite).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from _siblings import sibling

HERE = Path(__file__).resolve().parent
TARGET = 0.5
RECORDS = 50_000
PART_SIZE = 1_000


def one_run(
    c: ModuleType, pg: ModuleType, server: str, own_list: Path, count: int, engine: str,
    part_size: int,
) -> float:  # fmt: skip
    """Fresh gateways on `engine`; the own list filled untimed; records/s of the full sync."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-pg-{engine}-"))
        if engine == "postgresql":
            eu_store = stack.enter_context(pg.fresh_database(server, "gnc_bench_eu"))
            us_store = stack.enter_context(pg.fresh_database(server, "gnc_bench_us"))
        else:
            eu_store = us_store = "file"
        return float(
            c.full_sync_rate(
                Path(tmp), own_list, count, part_size,
                eu_store=eu_store, us_store=us_store, label=f"{engine:10s}",
            )
        )  # fmt: skip


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    c, pg = sibling("_ub1_common"), sibling("_pg_server")
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part-size", type=int, default=PART_SIZE)
    args = parser.parse_args(list(argv))
    own_list, seconds, cached = c.own_list_file(args.records)
    how = "cached" if cached else f"generated with sample_aeo and stored in {seconds:.1f} s"
    print(f"EU own list of {args.records} records the US profile receives: {how}", flush=True)
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    with pg.postgres_server() as server:
        for round_ in range(args.rounds):
            order = ("sqlite", "postgresql") if round_ % 2 == 0 else ("postgresql", "sqlite")
            for engine in order:
                rates[engine].append(
                    one_run(c, pg, server, own_list, args.records, engine, args.part_size)
                )
    sqlite, postgres = max(rates["sqlite"]), max(rates["postgresql"])
    ratio = postgres / sqlite
    verdict = "MEETS" if ratio >= TARGET else "MISSES"
    print(
        f"best of {args.rounds}: SQLite {sqlite:.0f}, PostgreSQL {postgres:.0f} records/s; "
        f"ratio PostgreSQL/SQLite {ratio:.2f}   ({verdict} the target >= {TARGET})",
        flush=True,
    )
    return {
        "sqlite_records_per_s": sqlite,
        "postgresql_records_per_s": postgres,
        "ratio_postgresql_over_sqlite": ratio,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
