"""UB1 full sync of 1,000,000 AEO records over the gRPC stream against one unary call per record.

EU and US gateways from config files (test PKI, the US partner profile); the US gateway (gRPC
server, node with the UB1 handlers, SQLite store WAL synchronous=FULL) in a child process, the
EU side (AEO service, outbox and delivery worker on its SQLite file, synchronous=FULL) here.

Before timing: the EU own list is filled with 1,000,000 sample_aeo records that the US profile
receives (consenting AEOS/AEOF operators with a US MID), so exactly 1,000,000 records are sent.

Timed, full sync, as `gncgw serve` runs it: the delivery worker's thread is started, then
``AeoService.full_sync(US)`` (the own list read in order from one snapshot, translated for the
partner, cut into parts of 1,000 records, each sealed (ES256 JWS) and queued in the outbox 16
parts per unit of work, the end with the reconciliation summary in the last unit) while the
worker already drains the outbox over the gRPC stream, until nothing is pending: the US
gateway verifies each envelope, stages the part in its storing
transaction, checks the end's summary against the staged records and swaps its list; each signed
receipt is verified and its message marked delivered with the receipt (message log row too).
After timing the US list's count and summary are checked against what EU sent.

Timed, baseline (same run, same gateways, before the full sync): a sample of the same records
one per envelope (a StatusChanges with one ADDED change), one unary Submit each, 16 in flight,
each verified, stored and applied by US and its receipt verified and stored by EU.

Memory: VmRSS of this process (the sender) and of the US child, before and after the full sync,
and the peak sampled during it.

Targets: full sync records/s >= 8x the unary records/s; sender RSS growth < 100 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from _siblings import sibling

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 8.0
TARGET_RSS_MB = 100.0
RECORDS = 1_000_000
UNARY_SAMPLE = 2_000
PART_SIZE = 1_000


def full_sync_run(c: ModuleType, side: object, server: object, count: int) -> dict[str, float]:
    """Timed full sync + concurrent delivery; checks the receiver's list; figures."""
    from gateway.store.outbox import OutboundState

    service = side.service  # type: ignore[attr-defined]
    rss_before = c.rss_kb()
    server_before = server.rss_kb()  # type: ignore[attr-defined]
    with c.PeakRss(["self", server.pid]) as peak:  # type: ignore[attr-defined]
        done = c.sync_while_delivering(side)
    rss_after = c.rss_kb()
    answer = server.ask("summary")  # type: ignore[attr-defined]
    sync, queued, elapsed = done.sync, done.queued_seconds, done.seconds
    if sync.records != count:
        raise SystemExit(f"full sync sent {sync.records} records, not {count}")
    if answer["count"] != count or answer["summary"] != c.summary_json(sync.summary):
        raise SystemExit(f"the US list does not match what EU sent: {answer}")
    states = service.outbox.counts()
    if states[OutboundState.PENDING] or states[OutboundState.DEAD]:
        raise SystemExit(f"outbox not drained: {states}")
    rate = count / elapsed
    print(
        f"full sync:   {count} records in {sync.parts} parts + end, queued in {queued:.1f} s, "
        f"all delivered in {elapsed:.1f} s: {rate:8.0f} records/s",
        flush=True,
    )
    print(
        f"  US holds {answer['count']} records, summary equal to EU's; "
        f"{done.delivered} messages delivered ({done.retried} retried), receipts verified and "
        "stored"
    )
    growth = (rss_after - rss_before) / 1024
    peak_growth = (peak.peak["self"] - rss_before) / 1024
    server_growth = (peak.peak[server.pid] - server_before) / 1024  # type: ignore[attr-defined]
    print(
        f"  sender RSS {rss_before / 1024:.0f} MB -> {rss_after / 1024:.0f} MB "
        f"(growth {growth:.0f} MB, peak growth {peak_growth:.0f} MB); receiver (US child) "
        f"RSS {server_before / 1024:.0f} MB -> peak {peak.peak[server.pid] / 1024:.0f} MB "  # type: ignore[attr-defined]
        f"(growth {server_growth:.0f} MB)",
        flush=True,
    )
    return {
        "full_sync_records_per_s": rate,
        "sender_rss_growth_mb": growth,
        "sender_rss_peak_growth_mb": peak_growth,
        "receiver_rss_peak_growth_mb": server_growth,
        "full_sync_seconds": elapsed,
    }


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    c = sibling("_ub1_common")
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--unary", type=int, default=UNARY_SAMPLE)
    parser.add_argument("--part-size", type=int, default=PART_SIZE)
    args = parser.parse_args(list(argv))
    with tempfile.TemporaryDirectory(prefix="bench-ub1-sync-") as tmp:
        work = Path(tmp)
        eu_config, us_config = c.write_configs(work)
        own_list, seconds, cached = c.own_list_file(args.records)
        how = "cached" if cached else f"generated with sample_aeo and stored in {seconds:.1f} s"
        print(f"EU own list of {args.records} records the US profile receives: {how}", flush=True)
        sample = c.sample_records(own_list, args.unary)
        side = c.eu_side(eu_config, "file", args.part_size)
        try:
            started = time.perf_counter()
            c.load_own_list(side, own_list)
            print(
                f"EU own list copied into the EU store in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            with c.us_server(us_config, "file") as server:
                unary, accepted = c.unary_baseline(side, sample)
                if accepted != len(sample):
                    raise SystemExit(f"unary baseline: {accepted} of {len(sample)} accepted")
                print(
                    f"unary:       {len(sample)} records, one envelope and one unary Submit each, "
                    f"16 in flight: {unary:8.0f} records/s (all ACCEPTED)",
                    flush=True,
                )
                figures = full_sync_run(c, side, server, args.records)
        finally:
            side.close()
    ratio = figures["full_sync_records_per_s"] / unary
    verdict = "MEETS" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ratio full sync / unary:   {ratio:8.2f}   ({verdict} the target >= {TARGET_RATIO})")
    growth = max(figures["sender_rss_growth_mb"], figures["sender_rss_peak_growth_mb"])
    verdict = "MEETS" if growth < TARGET_RSS_MB else "MISSES"
    print(
        f"sender RSS growth (peak):  {growth:8.0f} MB  "
        f"({verdict} the target < {TARGET_RSS_MB:.0f} MB)",
        flush=True,
    )
    return {"unary_records_per_s": unary, **figures, "ratio_full_sync_over_unary": ratio}


if __name__ == "__main__":
    main(sys.argv[1:])
