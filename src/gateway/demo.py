"""`make demo`: two gateways (EU and US) on loopback exchanging signed envelopes.

Everything is made on the spot: a test PKI, two TOML configurations, two `gncgw serve`
processes with SQLite stores. The demo then drives them with the real CLI and client code:
EU -> US over gRPC, US -> EU as XML over HTTPS, a resend answered as a duplicate, and three
kinds of bad input refused with signed rejection receipts. It checks every outcome and exits
non-zero if anything is not as it should be.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.config import load_config
from gateway.envelope.opened import Binding, new_header
from gateway.model.aeo import AeoStatus
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.control_result import ControlOutcome, ControlResult, ControlType, SealCheck
from gateway.model.header import utc_now
from gateway.node import seal_envelope
from gateway.store.aeo_store import AeoStore
from gateway.store.sqlite import SqliteDatabase
from gateway.store.transaction_store import TransactionStore
from gateway.testpki import init_test_pki
from gateway.translate import ub2_exchange
from gateway.translate.eos_aeo import ExportKind, load_mapping_spec, write_eos_xml
from gateway.translate.sample_aeo import generate_eos_export
from gateway.transport.links import open_link

CLI = [sys.executable, "-m", "gateway.cli"]
ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
US_PROFILE = ADAPTERS / "partners" / "us.toml"
CN_PROFILE = ADAPTERS / "partners" / "cn.toml"
# The official ICS / WCO DM schemas and samples (../shared/data beside the repository): read
# from there, never copied. Without them the UB2 step is skipped, and says why.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
UB2_REFERENCE = "NL25ENS000000001"
MAPPING = ADAPTERS / "mappings" / "eos-aeo.toml"
AEO_COUNT = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(
    admin: str,
    partner: str,
    ports: dict[str, int],
    binding: str,
    endpoint: str,
    profile: Path | None = None,
    extra: str = "",
) -> str:
    profile_line = f'profile = "{profile}"\n' if profile else ""
    return f"""# {admin} gateway, written by the demo
[gateway]
administration = "{admin}"
signing_key = "pki/{admin}/signing.key.pem"
signing_cert = "pki/{admin}/signing.pem"
tls_key = "pki/{admin}/tls.key.pem"
tls_cert = "pki/{admin}/tls.pem"

[store]
url = "sqlite:///{admin.lower()}/inbox.db"

[listen]
grpc = "127.0.0.1:{ports[admin + "-grpc"]}"
xml = "127.0.0.1:{ports[admin + "-xml"]}"

[[partners]]
administration = "{partner}"
binding = "{binding}"
endpoint = "{endpoint}"
ca = "pki/{partner}/ca.pem"
crl = "pki/{partner}/crl.pem"
{profile_line}
[delivery]
poll_seconds = 0.2
{extra}"""


class Demo:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.failures: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ub2_data = SHARED_DATA.is_dir()  # the UB2 step needs the official schemas

    # -- output --------------------------------------------------------------------------------
    @staticmethod
    def step(title: str) -> None:
        print(f"\n== {title}", flush=True)

    def expect(self, what: str, ok: bool) -> None:
        print(f"   [{'ok' if ok else 'FAILED'}] {what}", flush=True)
        if not ok:
            self.failures.append(what)

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        shown = " ".join(a if " " not in a else repr(a) for a in args)
        print(f"   $ gncgw {shown}", flush=True)
        done = subprocess.run([*CLI, *args], cwd=self.base, capture_output=True, text=True)
        for line in (done.stdout + done.stderr).splitlines():
            print(f"     {line}")
        return done

    # -- the gateways --------------------------------------------------------------------------
    def setup(self) -> None:
        self.step("Test PKI: a root CA per administration, signing and TLS certificates")
        admins = ("EU", "US", "CN") if self.ub2_data else ("EU", "US")
        init_test_pki(self.base / "pki", admins)
        print(f"   written under {self.base / 'pki'} (test keys only)")
        ports = {f"{a}-{kind}": _free_port() for a in admins for kind in ("grpc", "xml")}
        for admin in admins:
            (self.base / admin.lower()).mkdir()
        (self.base / "eu.toml").write_text(
            _config(
                "EU", "US", ports, "grpc", f"127.0.0.1:{ports['US-grpc']}", US_PROFILE,
                _eu_ub2(ports) if self.ub2_data else "",
            )
        )  # fmt: skip
        if self.ub2_data:
            (self.base / "cn.toml").write_text(
                _config("CN", "EU", ports, "grpc", f"127.0.0.1:{ports['EU-grpc']}")
            )
        (self.base / "us.toml").write_text(
            _config(
                "US", "EU", ports, "xml", f"https://127.0.0.1:{ports['EU-xml']}/gnc/v1/envelopes"
            )
        )
        self.step(
            f"Starting the {', '.join(admins)} gateways (gncgw serve), each with gRPC and XML "
            "listeners"
        )
        for admin in (a.lower() for a in admins):
            log = (self.base / f"{admin}.log").open("wb")
            process = subprocess.Popen(
                [*CLI, "serve", "--config", f"{admin}.toml"],
                cwd=self.base,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.processes.append(process)
        for admin in admins:
            self._wait_port(ports[f"{admin}-grpc"], admin)
            self._wait_port(ports[f"{admin}-xml"], admin)
        for admin in admins:
            print(
                f"   {admin}: gRPC 127.0.0.1:{ports[f'{admin}-grpc']}, "
                f"XML https://127.0.0.1:{ports[f'{admin}-xml']}"
            )

    def _wait_port(self, port: int, admin: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise SystemExit(f"the {admin} gateway exited early; see {self.base}/*.log")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the {admin} gateway did not listen on {port} within 30 s")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    # -- the exchanges -------------------------------------------------------------------------
    def exchanges(self) -> None:
        payload = self.base / "ping.xml"
        payload.write_text("<Ping xmlns='urn:gnc-gateway:demo'>EU-US link check</Ping>\n")

        self.step("EU -> US over gRPC (protobuf envelope, detached JWS ES256, mutual TLS)")
        done = self.run_cli(
            "send",
            "--config",
            "eu.toml",
            "--to",
            "US",
            "--ub",
            "UB1",
            "--type",
            "PING",
            "--content-type",
            "application/xml",
            "ping.xml",
        )
        self.expect(
            "US accepted and signed a receipt naming the digest sent",
            done.returncode == 0 and "ACCEPTED" in done.stdout,
        )

        self.step("US -> EU as XML over HTTPS (XML-DSig enveloped, exclusive C14N, ECDSA-SHA256)")
        done = self.run_cli(
            "send",
            "--config",
            "us.toml",
            "--to",
            "EU",
            "--ub",
            "UB1",
            "--type",
            "PING",
            "--content-type",
            "application/xml",
            "ping.xml",
        )
        self.expect(
            "EU accepted and signed an XML receipt",
            done.returncode == 0 and "ACCEPTED" in done.stdout,
        )

        eu = load_config(self.base / "eu.toml")
        body = payload.read_bytes()

        def header(**overrides: object):  # type: ignore[no-untyped-def]
            fields: dict[str, object] = dict(
                payload=body,
                utility_block=UtilityBlock.UB1,
                message_type="PING",
                sender=Administration.EU,
                receiver=Administration.US,
                payload_content_type="application/xml",
            )
            fields.update(overrides)
            return new_header(**fields)  # type: ignore[arg-type]

        with open_link(eu, Administration.US) as link:
            self.step("The same envelope delivered twice (a retry after a lost answer)")
            raw = seal_envelope(Binding.PROTOBUF, header(), body, eu.signing_identity)
            first = link.deliver(raw)
            again = link.deliver(raw)
            print(f"   first:  {first.receipt.outcome.value}, receipt {first.receipt.receipt_id}")
            print(
                f"   resend: {again.receipt.outcome.value}, receipt {again.receipt.receipt_id}"
                " (the original receipt, byte for byte)"
            )
            self.expect(
                "the resend is answered with the original receipt, stored once",
                first.accepted and again.raw == first.raw,
            )

            self.step("Bad input: each refused with a signed rejection receipt, nothing stored")
            tampered = pb.SignedEnvelope.FromString(raw)
            tampered.payload = body.replace(b"check", b"chekc")
            self._refused(
                link,
                "payload altered in transit",
                tampered.SerializeToString(),
                "ENV_PAYLOAD_DIGEST_MISMATCH",
            )
            from gateway.testpki import TestPki

            pki = TestPki(self.base / "pki")
            revoked = pki.identity("EU", "revoked")
            self._refused(
                link,
                "signed with a revoked EU certificate",
                seal_envelope(Binding.PROTOBUF, header(), body, revoked),
                "TRUST_REVOKED",
            )
            changed = body + b"<!-- changed -->"
            other = header(message_id=first.receipt.message_id, payload=changed)
            self._refused(
                link,
                "an old message id reused for another payload",
                seal_envelope(Binding.PROTOBUF, other, changed, eu.signing_identity),
                "DLV_DUPLICATE_CONFLICT",
            )

    def _refused(self, link: object, what: str, raw: bytes, code: str) -> None:
        verified = link.deliver(raw)  # type: ignore[attr-defined]
        receipt = verified.receipt
        print(f"   {what}: {receipt.outcome.value} {receipt.error_code}")
        self.expect(f"{what} -> {code}", not receipt.accepted and receipt.error_code == code)

    def stores(self) -> None:
        self.step("What each gateway stored (SQLite inbox: envelope and receipt, exact bytes)")
        print("   (the PING messages; the EU gateway also sent the US its daily full AEO list,")
        print("   still empty, when it started: that exchange is shown below)")
        counts = {}
        for admin in ("eu", "us"):
            with sqlite3.connect(self.base / admin / "inbox.db") as db:
                rows = db.execute(
                    "SELECT message_id, sender, binding, length(envelope), length(receipt) "
                    "FROM inbox WHERE message_type = 'PING' ORDER BY stored_at"
                ).fetchall()
            counts[admin] = len(rows)
            for row in rows:
                print(
                    f"   {admin.upper()} inbox: {row[0]} from {row[1]} ({row[2]}, "
                    f"{row[3]} bytes, receipt {row[4]} bytes)"
                )
        self.expect(
            "US stored 2 messages (gRPC send, first delivery), EU stored 1",
            counts == {"us": 2, "eu": 1},
        )
        with sqlite3.connect(self.base / "eu" / "inbox.db") as db:
            envelope = db.execute(
                "SELECT envelope FROM inbox WHERE message_type = 'PING'"
            ).fetchone()[0]
        (self.base / "received-by-eu.xml").write_bytes(envelope)
        self.step("The XML envelope EU received, checked again by gncgw inspect")
        done = self.run_cli("inspect", "received-by-eu.xml", "--config", "eu.toml")
        self.expect(
            "inspect re-verifies the stored bytes and trusts the US signer",
            done.returncode == 0 and "trusted for US" in done.stdout,
        )

    # -- UB1: AEO mutual recognition -----------------------------------------------------------
    def wait_delivered(self, what: str, timeout: float = 60.0) -> None:
        """Until the EU gateway's delivery worker has emptied its outbox (or gave up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sqlite3.connect(self.base / "eu" / "inbox.db") as db:
                states = dict(
                    db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
                )
            if not states.get("pending"):
                print(f"   outbox after {what}: {states}")
                self.expect(f"{what}: every envelope delivered, none dead", not states.get("dead"))
                return
            time.sleep(0.2)
        self.expect(f"{what}: delivered within {timeout:.0f} s", False)

    def aeo(self) -> None:
        spec = load_mapping_spec(MAPPING.read_bytes(), MAPPING.name)
        self.step(f"UB1: the EU imports an EOS export of {AEO_COUNT} AEOs (gncgw aeo import)")
        (self.base / "eos-export.xml").write_bytes(
            generate_eos_export(AEO_COUNT, seed=2026, kind="xml", spec=spec)
        )
        done = self.run_cli("aeo", "import", "eos-export.xml", "--config", "eu.toml")
        self.expect("the export was imported", done.returncode == 0)
        print("   (only consenting AEOS/AEOF operators with a linked MID go to the US)")
        self.wait_delivered("the import's notifications")

        self.step("UB1: the full list to the US in signed parts, with its reconciliation summary")
        done = self.run_cli("aeo", "sync", "--to", "US", "--config", "eu.toml", "--part-size", "50")
        self.expect("the full list was queued", done.returncode == 0)
        self.wait_delivered("the full list")

        self.step("UB1: a suspension and a consent withdrawal (EOS change feed)")
        eu_store = AeoStore(SqliteDatabase(self.base / "eu" / "inbox.db"), Administration.EU)
        us_store = AeoStore(SqliteDatabase(self.base / "us" / "inbox.db"), Administration.US)
        held = sorted(r.authorisation_number for r in us_store.records(Administration.EU))
        suspended, withdrawn = (
            next(iter(eu_store.find(Administration.EU, number))) for number in held[:2]
        )
        feed = [
            replace(
                suspended,
                status=AeoStatus.SUSPENDED,
                status_effective=date.today(),
                status_reason="Suspended pending re-assessment",
                version=suspended.version + 1,
            ),
            replace(
                withdrawn,
                status=AeoStatus.CONSENT_WITHDRAWN,
                consent=False,
                consent_date=date.today(),
                status_effective=date.today(),
                status_reason="Operator withdrew consent",
                version=withdrawn.version + 1,
            ),
        ]
        (self.base / "eos-changes.xml").write_bytes(write_eos_xml(feed, ExportKind.CHANGES, spec))
        done = self.run_cli("aeo", "import", "eos-changes.xml", "--config", "eu.toml")
        self.expect("the change feed was imported", done.returncode == 0)
        self.wait_delivered("the suspension and the withdrawal")
        us_now = {r.authorisation_number: r for r in us_store.records(Administration.EU)}
        print(
            f"   US holds {suspended.authorisation_number}: "
            f"{us_now[suspended.authorisation_number].status.value}"
        )
        print(
            f"   US holds {withdrawn.authorisation_number}: "
            f"{'removed' if withdrawn.authorisation_number not in us_now else 'STILL THERE'}"
        )
        self.expect(
            "the US holds the suspension, and nothing of the operator who withdrew consent",
            us_now[suspended.authorisation_number].status is AeoStatus.SUSPENDED
            and withdrawn.authorisation_number not in us_now,
        )

        self.step(
            "UB1: the US asks the EU online: is this trader an AEO right now? (signed both ways)"
        )
        done = self.run_cli(
            "aeo", "query", "--partner", "EU", "--config", "us.toml", suspended.holder_id
        )
        self.expect(
            "the EU answers that the suspended operator is not an AEO now",
            done.returncode == 3 and "SUSPENDED" in done.stdout,
        )
        granted = next(r for r in us_store.records(Administration.EU) if r.is_aeo)
        done = self.run_cli(
            "aeo", "query", "--partner", "EU", "--config", "us.toml", granted.holder_id
        )
        self.expect(
            "the EU confirms a granted AEO and since when",
            done.returncode == 0 and "is an AEO of EU since" in done.stdout,
        )

        self.step("UB1: reconciliation: both sides' summaries (count and digest per status)")
        eu_view = self.run_cli("aeo", "summary", "--partner", "US", "--config", "eu.toml")
        us_view = self.run_cli("aeo", "summary", "--partner", "EU", "--config", "us.toml")
        self.expect(
            "the US holds exactly the EU's list for the US (summaries agree)",
            eu_view.returncode == 0
            and us_view.returncode == 0
            and _digests(eu_view.stdout) == _digests(us_view.stdout) != [],
        )

    # -- UB2: transaction data (EU-China SSTL) and control results -----------------------------
    def ub2(self) -> None:
        self.step("UB2: an ICS entry summary declaration (CC315A) to CN on an SSTL lane")
        if not self.ub2_data:
            print(
                f"   skipped: the official ICS / WCO DM schemas and samples are not present at "
                f"{SHARED_DATA}\n   (the gateway validates EU messages against them and the "
                "project never copies them into the repository; not a failure)"
            )
            return
        sample = SHARED_DATA / "ics-ens" / "examples" / "CC315A-schemaValidSample-v11-2.xml"
        (self.base / "cc315a-official-sample.xml").write_bytes(sample.read_bytes())
        print(
            f"   {sample.name} is schema-valid but its codes are placeholders ('EN' for a "
            "country, 'ABC123' for ports and a container): sent as is, it is refused"
        )
        done = self.run_cli(
            "send", "--to", "CN", "cc315a-official-sample.xml", "--config", "eu.toml"
        )
        self.expect(
            "the placeholder codes are refused with their XPaths, nothing sent",
            done.returncode == 1
            and "UB2_COUNTRY_INVALID" in done.stderr
            and "nothing was sent to CN" in done.stderr,
        )
        print(
            "   so the demo edits the sample in memory: reference "
            f"{UB2_REFERENCE}, ports CNSHA -> NLRTM (the Shanghai-Rotterdam lane of\n"
            "   adapters/partners/cn.toml), consignor and consignee NL810000001 (a participating "
            "operator: an ENS TIN\n   is an..17, so the lane's 18-character CN operator id "
            "cannot appear), real country, office,\n   commodity, package and container codes"
        )
        (self.base / "cc315a-sstl.xml").write_bytes(_on_demo_lane(sample.read_bytes()))
        done = self.run_cli("validate", "cc315a-sstl.xml", "--config", "eu.toml")
        self.expect("the edited message is schema-valid and every code is on its list",
                    done.returncode == 0)  # fmt: skip
        done = self.run_cli("send", "--to", "CN", "cc315a-sstl.xml", "--config", "eu.toml")
        self.expect(
            "translated, on lane Shanghai-Rotterdam, sealed and accepted by CN (signed receipt)",
            done.returncode == 0
            and "on lane Shanghai-Rotterdam" in done.stdout
            and "ACCEPTED" in done.stdout,
        )
        cn_store = TransactionStore(
            SqliteDatabase(self.base / "cn" / "inbox.db"), Administration.CN
        )
        received = cn_store.received(Administration.EU, reference=UB2_REFERENCE)
        self.expect(f"CN stored transaction {UB2_REFERENCE}", len(received) == 1)
        if not received:
            return
        record = received[0].record
        print(
            f"   CN holds {record.source.value} {record.reference}: {len(record.goods_items)} "
            f"goods item(s), {record.place_of_loading} -> {record.place_of_unloading}, "
            f"containers {', '.join(c for i in record.goods_items for c in i.containers)}"
        )

        self.step("UB2: CN answers with a control result; the EU reads it as a DMS notification")
        result = ControlResult(
            reference="CNSHA-CTL-0001",
            transaction_reference=UB2_REFERENCE,
            transaction_message_id=received[0].message_id,
            controlling_administration=Administration.CN,
            controlled_at=utc_now().replace(microsecond=0),
            control_types=(ControlType.NON_INTRUSIVE, ControlType.SEAL_CHECK),
            outcome=ControlOutcome.SATISFACTORY,
            seals=(SealCheck("SH0012345", True, "CSQU3054383"),),
        )
        (self.base / "control-result.json").write_text(ub2_exchange.to_json(result))
        done = self.run_cli(
            "ub2", "send-control-result", "control-result.json", "--to", "EU", "--config",
            "cn.toml",
        )  # fmt: skip
        self.expect("the EU accepted CN's control result (signed receipt)",
                    done.returncode == 0 and "ACCEPTED" in done.stdout)  # fmt: skip
        done = self.run_cli("ub2", "control-results", UB2_REFERENCE, "--config", "eu.toml")
        self.expect(
            "the EU holds it with its transaction and prints it as a DMS Response (function 07)",
            done.returncode == 0
            and "<FunctionCode>07</FunctionCode>" in done.stdout
            and "SATISFACTORY" in done.stdout,
        )


def _eu_ub2(ports: dict[str, int]) -> str:
    """The EU gateway's CN partner (profile cn.toml: UB1 and the SSTL lanes) and its [ub2]."""
    return f"""
[[partners]]
administration = "CN"
binding = "grpc"
endpoint = "127.0.0.1:{ports["CN-grpc"]}"
ca = "pki/CN/ca.pem"
crl = "pki/CN/crl.pem"
profile = "{CN_PROFILE}"

[ub2]
schema_packs.ics_ens = "{SHARED_DATA / "ics-ens" / "xsds"}"
schema_packs.wco_dm = "{SHARED_DATA / "wco-dm-cds" / "schemas"}"
"""


def _on_demo_lane(data: bytes) -> bytes:
    """The official CC315A sample with real codes, on the Shanghai-Rotterdam demo lane."""
    from lxml import etree

    document = etree.fromstring(data)
    values = {
        "RefNumHEA4": UB2_REFERENCE, "TraModAtBorHEA76": "1",
        "PlaLoaGOOITE334": "CNSHA", "PlaLoaGOOITE333": "CNSHA",
        "PlaUnlGOOITE334": "NLRTM", "PlaUnlGOOITE333": "NLRTM",
        "TINCO159": "NL810000001", "TINCO259": "NL810000001",
        "TINCE159": "NL810000001", "TINCE259": "NL810000001",
        "RefNumCOL1": "NL000396", "RefNumCUSOFFFENT731": "NL000396",
        "RefNumSUBENR909": "NL000396", "ComNomCMD1": "846230", "KinOfPacGS23": "CS",
        "ConNumNR21": "CSQU3054383",
    }  # fmt: skip
    for element in document.iter("*"):
        local = etree.QName(element).localname
        if local in values:
            element.text = values[local]
        elif element.text == "EN" and not local.endswith("LNG"):
            element.text = "CN" if local in ("CouCO125", "CouCO225") else "NL"
    return bytes(etree.tostring(document, xml_declaration=True, encoding="UTF-8"))


def _digests(summary_output: str) -> list[str]:
    """The per-status lines (status, count, digest) of `gncgw aeo summary`."""
    return [line.strip() for line in summary_output.splitlines() if line.startswith("  ")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway.demo", description=__doc__)
    parser.add_argument("--dir", default="var/demo", help="working directory (recreated)")
    args = parser.parse_args(argv)
    base = Path(args.dir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    demo = Demo(base)
    try:
        demo.setup()
        demo.exchanges()
        demo.stores()
        demo.aeo()
        demo.ub2()
    finally:
        demo.stop()
    print()
    if demo.failures:
        print(f"demo FAILED: {len(demo.failures)} check(s) did not hold: {demo.failures}")
        return 1
    print(f"demo ok: every exchange verified. Files, configs and logs are in {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
