"""UB2 translation of a typical CC315A: validate + translate + serialise to UB2 XML, against bare
lxml parse + serialise of the same bytes, measured in the same run.

Translation: ``read_eu_message`` (hardened parse of the bytes received, detection, libxml2
validation against the official CC315A v11.2 schema from ../shared/data/ics-ens/xsds), then
``to_consignment`` by the CC315A mapping spec (adapters/mappings), then ``encode`` to the UB2
XML binding. Baseline: ``etree.tostring(etree.fromstring(data))`` with lxml's default parser.
The document is the ICS2 "schemaValidSample" CC315A (6 KB, 145 elements). Both sides run in
alternating rounds in this process; each side's rate is its best round (the machine is shared,
so the best round is the one least disturbed). The per-step times are printed too (best of
their own rounds), and after timing the UB2 output is checked against ub2-transaction.xsd and
decoded back to the same record.

Target: translation / bare >= 0.3.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lxml import etree

from gateway.translate import ub2_exchange
from gateway.translate.eu_messages import load_schema_packs, read_eu_message
from gateway.translate.ub2_exchange import PayloadForm, Ub2Kind, decode, encode
from gateway.translate.ub2_translate import load_mapping_specs, to_consignment

TARGET = 0.3
ROUNDS = 7
ROUND_SECONDS = 0.4
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data" / "ics-ens"
SAMPLE = SHARED / "examples" / "CC315A-schemaValidSample-v11-2.xml"


def per_second(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``work`` over about ``seconds`` (a short warm-up first)."""
    for _ in range(20):
        work()
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            work()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def best_rates(
    sides: dict[str, Callable[[], object]], rounds: int, seconds: float
) -> dict[str, float]:
    """The best rate of each side over ``rounds`` alternating rounds."""
    best = dict.fromkeys(sides, 0.0)
    for _ in range(rounds):
        for name, work in sides.items():
            gc.collect()
            best[name] = max(best[name], per_second(work, seconds))
    return best


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=ROUND_SECONDS, help="per round and side")
    args = parser.parse_args(list(argv))
    if not SAMPLE.is_file():
        raise SystemExit(f"{SAMPLE} is missing (../shared/data beside the repository)")
    data = SAMPLE.read_bytes()
    packs = load_schema_packs(SHARED / "xsds", None)
    specs = load_mapping_specs(REPO / "adapters" / "mappings")

    def bare() -> bytes:
        return bytes(etree.tostring(etree.fromstring(data)))

    def translate() -> bytes:
        message = read_eu_message(data, packs)
        return encode(to_consignment(message, specs[message.source]), PayloadForm.XML)

    message = read_eu_message(data, packs)
    spec = specs[message.source]
    record = to_consignment(message, spec)
    steps: dict[str, Callable[[], object]] = {
        "parse + detect (no validation)": lambda: read_eu_message(data, packs, validate=False),
        "validate (libxml2, on the tree)": lambda: packs.validate(message),
        "to_consignment": lambda: to_consignment(message, spec),
        "encode UB2 XML": lambda: encode(record, PayloadForm.XML),
    }
    print(
        f"{SAMPLE.name}: {len(data)} bytes, {sum(1 for _ in message.root.iter())} elements in "
        f"the message; {args.rounds} alternating rounds of {args.seconds} s per side, best round",
        flush=True,
    )
    rates = best_rates({"bare": bare, "translate": translate}, args.rounds, args.seconds)
    step_rates = best_rates(steps, max(2, args.rounds // 2), args.seconds / 2)

    output = translate()  # after timing: the output is valid UB2 and carries the same record
    if not ub2_exchange.schema().validate(etree.fromstring(output)):
        raise SystemExit("the UB2 XML output is not valid against ub2-transaction.xsd")
    if decode(output, Ub2Kind.TRANSACTION, PayloadForm.XML) != record:
        raise SystemExit("the UB2 XML output does not decode to the translated record")

    bare_rate, rate = rates["bare"], rates["translate"]
    print(f"bare lxml parse + serialise:    {bare_rate:8.0f} docs/s ({1e6 / bare_rate:5.0f} µs)")
    print(f"validate + translate + UB2 XML: {rate:8.0f} msgs/s ({1e6 / rate:5.0f} µs)")
    for name, step in step_rates.items():
        print(f"  {name:32s} {1e6 / step:6.0f} µs")
    ratio = rate / bare_rate
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio translate/bare:           {ratio:8.2f}   ({verdict} the target >= {TARGET})")
    figures = {
        "bare_docs_per_s": bare_rate,
        "translate_msgs_per_s": rate,
        "ratio_translate_over_bare": ratio,
    }
    for name, step in step_rates.items():
        key = name.split(" (")[0].replace(" + ", "_").replace(" ", "_").lower()
        figures[f"us_{key}"] = 1e6 / step
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
