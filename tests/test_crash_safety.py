"""Crash safety, tested for real (issue 7, item 3): `gncgw serve` processes on real stores with
real certificates, killed with SIGKILL mid-run and restarted on the same store.

* Receiver crash: a load driver submits signed envelopes (unary calls on several threads and
  one stream) to the US gateway, which is killed while calls are in flight. After a restart the
  driver resends what got no receipt and some of what did. Every receipted message is stored
  exactly once with the digest its receipt names, nothing unsubmitted is stored, a resend gets
  the original receipt byte for byte, and the hash-chained message log still verifies.
* Sender crash: the EU gateway has a couple of thousand UB1 changes queued for US (imported
  with `gncgw aeo import`); it is killed mid-delivery and restarted. Once its outbox is drained,
  every message was delivered exactly once (stored once by US, settled once with the US receipt
  by EU, resends answered as duplicates), in order per AEO record, with no dead letters, and
  both message logs verify.
* Kill during a full list: the EU gateway is killed after US staged some parts of a UB1 full
  list and before its end; US still holds its previous list (including a record only a
  completed full list would remove), and takes the new one once the restarted EU finishes.

Each scenario runs on SQLite, and on PostgreSQL once that store exists (see crash_harness).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from crash_harness import (
    US_PROFILE,
    Backend,
    ServeProcess,
    StoreView,
    free_port,
    gncgw,
    partner_tls,
    require_backend,
    store_urls,
    write_gateway_config,
)

from gateway import testpki
from gateway.cli import main
from gateway.config import build_node, load_config
from gateway.envelope import protobuf_binding
from gateway.envelope.opened import Binding, new_header
from gateway.errors import GatewayError
from gateway.model.aeo import AeoRecord, AeoStatus
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import utc_now
from gateway.node import open_receipt, seal_envelope
from gateway.partners.profile import eligible_for, load_profile, partner_delta
from gateway.services.aeo import service_for
from gateway.store.message_log import Direction, LogOutcome
from gateway.translate import aeo_exchange
from gateway.translate.aeo_exchange import CONTENT_TYPES, MessageType, PayloadForm, StatusChanges
from gateway.translate.eos_aeo import ExportKind, load_mapping_spec, write_eos_xml
from gateway.translate.sample_aeo import generate_records
from gateway.transport.grpc_client import (
    GrpcPartnerClient,
    PartnerExchange,
    VerifiedReceipt,
    verify_receipt,
)
from gateway.trust.store import PartnerTrust, TrustStore

pytestmark = [pytest.mark.crash, pytest.mark.timeout(120)]

EU, US = Administration.EU, Administration.US
SPEC_PATH = Path(__file__).resolve().parent.parent / "adapters" / "mappings" / "eos-aeo.toml"


@pytest.fixture(scope="module")
def crash_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("crash-pki"), ("EU", "US"))


@pytest.fixture(params=[Backend.SQLITE, Backend.POSTGRESQL], ids=lambda b: str(b))
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    require_backend(chosen)
    return chosen


def _trust(pki: testpki.TestPki, admin: str) -> TrustStore:
    code = Administration(admin)
    return TrustStore([PartnerTrust(code, (pki.ca(admin),), (pki.crl(admin),))])


# --- 1. receiver crash --------------------------------------------------------------------------
N_ENVELOPES = 480
N_UNARY_THREADS = 4
N_STREAMED = 160  # the last ones, over one stream; the rest by unary calls
KILL_AFTER = 120  # receipts obtained before the SIGKILL


def _envelopes(pki: testpki.TestPki, count: int) -> dict[str, bytes]:
    identity = pki.identity("EU")
    out: dict[str, bytes] = {}
    for index in range(count):
        payload = f"<AEO><Id>NL{index:09d}</Id><Status>granted</Status></AEO>".encode()
        header = new_header(
            payload=payload,
            utility_block=UtilityBlock.UB1,
            message_type="AEOMutualRecognition",
            sender=EU,
            receiver=US,
            payload_content_type="application/xml",
        )
        out[header.message_id] = seal_envelope(Binding.PROTOBUF, header, payload, identity)
    return out


@dataclass
class LoadDriver:
    """Submits envelopes to one gateway and keeps each verified receipt (the first one got)."""

    exchange: PartnerExchange
    receipts: dict[str, VerifiedReceipt] = field(default_factory=dict)
    errors: list[tuple[str, GatewayError, bool]] = field(default_factory=list)  # after kill?
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, message_id: str, verified: VerifiedReceipt) -> None:
        with self.lock:
            self.receipts.setdefault(message_id, verified)

    def unary(self, raws: list[tuple[str, bytes]], crashed: threading.Event) -> None:
        for message_id, raw in raws:
            with self.lock:
                self.in_flight += 1
            try:
                verified = self.exchange.deliver(raw, timeout=10)
            except GatewayError as error:
                with self.lock:
                    self.errors.append((message_id, error, crashed.is_set()))
                if crashed.is_set():
                    return  # the node is gone: what is left goes again after the restart
                continue
            finally:
                with self.lock:
                    self.in_flight -= 1
            self._record(message_id, verified)

    def stream(self, raws: list[tuple[str, bytes]], crashed: threading.Event) -> None:
        ids = [message_id for message_id, _ in raws]
        got = 0
        try:
            for verified in self.exchange.deliver_stream(raw for _, raw in raws):
                self._record(ids[got], verified)
                got += 1
        except GatewayError as error:
            with self.lock:
                self.errors.append((ids[got] if got < len(ids) else "", error, crashed.is_set()))

    def resend(self, raws: list[tuple[str, bytes]]) -> dict[str, VerifiedReceipt]:
        """After the restart: half by unary calls, half over one stream; every answer kept."""
        half = len(raws) // 2
        answers = {message_id: self.exchange.deliver(raw) for message_id, raw in raws[:half]}
        streamed = raws[half:]
        for (message_id, _), verified in zip(
            streamed, self.exchange.deliver_stream(raw for _, raw in streamed), strict=True
        ):
            answers[message_id] = verified
        return answers


def test_receiver_killed_mid_load_keeps_every_receipted_message_once(
    backend: Backend, crash_pki: testpki.TestPki, tmp_path: Path
) -> None:
    pki = crash_pki
    with store_urls(backend, tmp_path, ["us"]) as (us_store,):
        port = free_port()
        config = write_gateway_config(
            tmp_path / "us.toml", pki, "US", "EU", store_url=us_store, grpc_port=port,
            partner_endpoint=f"127.0.0.1:{free_port()}",  # nothing is queued for EU
        )  # fmt: skip
        submitted = _envelopes(pki, N_ENVELOPES)
        items = list(submitted.items())
        with ServeProcess(config, partner_tls(pki, "EU", "US")) as us:
            us.start()
            client = GrpcPartnerClient(us.target, tls=partner_tls(pki, "EU", "US"), stream_batch=8)
            driver = LoadDriver(PartnerExchange(client, partner=US, trust=_trust(pki, "US")))
            crashed = threading.Event()
            unary_part, stream_part = items[:-N_STREAMED], items[-N_STREAMED:]
            threads = [
                threading.Thread(
                    target=driver.unary, args=(unary_part[i::N_UNARY_THREADS], crashed)
                )
                for i in range(N_UNARY_THREADS)
            ]
            threads.append(threading.Thread(target=driver.stream, args=(stream_part, crashed)))
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 60
            while len(driver.receipts) < KILL_AFTER and time.monotonic() < deadline:
                time.sleep(0.002)
            with driver.lock:
                in_flight_at_kill = driver.in_flight
            crashed.set()
            us.kill()
            for thread in threads:
                thread.join(60)
            client.close()
            before = dict(driver.receipts)
            if len(before) < KILL_AFTER:
                us.fail(f"only {len(before)} receipts in 60 s; errors: {driver.errors[:3]}")
            if len(before) == N_ENVELOPES:
                us.fail("every envelope was receipted before the kill: the crash hit nothing")
            early = [e for e in driver.errors if not e[2]]
            assert not early, early
            assert in_flight_at_kill > 0, "the kill should come while calls are in flight"
            assert all(v.accepted for v in before.values())

            us.start()  # same configuration, same store
            unanswered = [(m, raw) for m, raw in items if m not in before]
            again = [(m, raw) for m, raw in items if m in before][::5]
            client = GrpcPartnerClient(us.target, tls=partner_tls(pki, "EU", "US"), stream_batch=8)
            with client:
                driver.exchange = PartnerExchange(client, partner=US, trust=_trust(pki, "US"))
                answers = driver.resend(unanswered + again)
            us.stop()
        print(
            f"receiver crash: {len(before)} receipted before the kill, {in_flight_at_kill} "
            f"in flight; {len(unanswered)} unanswered and {len(again)} receipted resent"
        )

        for message_id, _ in again:  # receipted before the crash: the very same receipt
            assert answers[message_id].raw == before[message_id].raw, message_id
        assert all(v.accepted for v in answers.values())
        receipts = {
            **{m: v.raw for m, v in answers.items()},
            **{m: v.raw for m, v in before.items()},
        }

        with StoreView(us_store) as view:
            rows = view.rows("SELECT message_id, received_sha256, receipt FROM inbox")
            log_rows = view.rows(
                "SELECT message_id, count(*) FROM message_log WHERE direction = ? "
                "AND outcome = ? GROUP BY message_id",
                (Direction.RECEIVED.value, LogOutcome.ACCEPTED.value),
            )
        stored = {str(m): (bytes(digest), bytes(receipt)) for m, digest, receipt in rows}
        assert len(rows) == len(stored), "a message id is stored twice"
        assert set(stored) - set(submitted) == set(), "stored without being submitted"
        assert set(stored) == set(submitted), "a submitted message is missing after resending"
        for message_id, raw in submitted.items():
            digest, stored_receipt = stored[message_id]
            named = open_receipt(Binding.PROTOBUF, receipts[message_id]).receipt
            assert named.message_id == message_id
            assert digest == named.received_sha256 == hashlib.sha256(raw).digest(), message_id
            assert stored_receipt == receipts[message_id], f"{message_id}: not the receipt given"
        assert {str(m): int(n) for m, n in log_rows} == dict.fromkeys(submitted, 1)

        verified = gncgw("log", "verify", "--config", str(config))
        assert verified.returncode == 0, verified.stdout + verified.stderr


# --- 2. sender crash ----------------------------------------------------------------------------
N_RECORDS = 12
N_ROUNDS = 150  # change feeds; each amends every record (one version up)
# Small envelopes: enough deliveries that the kill lands mid-way even on a busy machine
# (each delivery costs more on PostgreSQL, so fewer, larger envelopes keep the test short).
CHANGES_PER_ENVELOPE = {Backend.SQLITE: 4, Backend.POSTGRESQL: 12}


def _us_eligible_records() -> list[AeoRecord]:
    profile = load_profile(US_PROFILE.read_text(), US_PROFILE.name)
    out = []
    for record in generate_records(400, 7):
        if record.status is AeoStatus.GRANTED and eligible_for(profile, record):
            out.append(record)
        if len(out) == N_RECORDS:
            return out
    raise AssertionError("the sample has too few records eligible for US")


def _queue_changes(config: Path, directory: Path, changes_per_envelope: int) -> int:
    """`gncgw aeo import` a full export, then N_ROUNDS change feeds, each amending every record
    one version up (imported in one session of the AEO service: a CLI start per feed would
    cost the test most of its time); how many changes were queued for US."""
    spec = load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)
    records = _us_eligible_records()
    export = directory / "eos-full.xml"
    export.write_bytes(write_eos_xml(records, ExportKind.FULL, spec))
    assert main(["aeo", "import", str(export), "--config", str(config)]) == 0
    gateway_config = load_config(config)
    node = build_node(gateway_config)
    try:
        service = service_for(
            gateway_config, node.inbox.database, spec, batch_size=changes_per_envelope
        )
        queued = 0
        for round_ in range(1, N_ROUNDS + 1):
            records = [
                replace(r, version=r.version + 1,
                        address=replace(r.address, street=f"Kade {round_}"))
                for r in records
            ]  # fmt: skip
            result = service.import_export(
                write_eos_xml(records, ExportKind.CHANGES, spec), source=f"feed-{round_}"
            )
            queued += sum(p.changes for p in result.partners)
    finally:
        node.inbox.close()
    assert queued == N_RECORDS * N_ROUNDS
    return N_RECORDS * (N_ROUNDS + 1)


def _versions_in_inbox_order(view: StoreView) -> list[tuple[str, int]]:
    """(authorisation number, version) of every UB1 status change US stored, in store order."""
    rows = view.rows(
        f"SELECT envelope FROM inbox WHERE message_type = ? ORDER BY {view.insertion_order}",
        (StatusChanges.message_type.value,),
    )
    out = []
    for (raw,) in rows:
        opened = protobuf_binding.open_envelope(bytes(raw))
        payload = aeo_exchange.decode(opened.payload, opened.header.message_type,
                                      PayloadForm.PROTOBUF)  # fmt: skip
        assert isinstance(payload, StatusChanges)
        out += [(c.authorisation_number, c.version) for c in payload.changes]
    return out


@pytest.fixture
def quiet_cli(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    capsys.readouterr()


def test_sender_killed_mid_delivery_delivers_every_message_once_in_order(
    backend: Backend, crash_pki: testpki.TestPki, tmp_path: Path, quiet_cli: None
) -> None:
    pki = crash_pki
    with store_urls(backend, tmp_path, ["eu", "us"]) as (eu_store, us_store):
        eu_port, us_port = free_port(), free_port()
        eu_config = write_gateway_config(
            tmp_path / "eu.toml", pki, "EU", "US", store_url=eu_store, grpc_port=eu_port,
            partner_endpoint=f"127.0.0.1:{us_port}", profile=US_PROFILE,
        )  # fmt: skip
        us_config = write_gateway_config(
            tmp_path / "us.toml", pki, "US", "EU", store_url=us_store, grpc_port=us_port,
            partner_endpoint=f"127.0.0.1:{eu_port}",
        )  # fmt: skip
        changes = _queue_changes(eu_config, tmp_path, CHANGES_PER_ENVELOPE[backend])
        with StoreView(eu_store) as eu_view:
            queued = int(eu_view.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'"))
        assert queued >= N_ROUNDS, queued

        with (
            ServeProcess(us_config, partner_tls(pki, "EU", "US")) as us,
            ServeProcess(eu_config, partner_tls(pki, "US", "EU")) as eu,
            StoreView(eu_store) as eu_view,
        ):
            us.start()
            eu.start()
            deadline = time.monotonic() + 60
            delivered = 0
            while delivered < queued // 3 and time.monotonic() < deadline:
                time.sleep(0.01)
                delivered = int(
                    eu_view.scalar("SELECT count(*) FROM outbox WHERE state = 'delivered'")
                )
            if delivered < queued // 3:
                eu.fail(f"only {delivered} of {queued} delivered in 60 s")
            eu.kill()
            at_kill = int(eu_view.scalar("SELECT count(*) FROM outbox WHERE state = 'delivered'"))
            if at_kill >= queued:
                eu.fail("the whole outbox was delivered before the kill: the crash hit nothing")

            eu.start()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                left = int(eu_view.scalar("SELECT count(*) FROM outbox WHERE state <> 'delivered'"))
                if not left:
                    break
                time.sleep(0.05)
            else:
                eu.fail(f"{left} message(s) still not delivered 90 s after the restart")
            eu.stop()
            us.stop()

        with StoreView(eu_store) as eu_view, StoreView(us_store) as us_view:
            outbox = eu_view.rows(
                "SELECT message_id, ordering_key, state, envelope, envelope_sha256, receipt "
                "FROM outbox ORDER BY seq"
            )
            inbox = us_view.rows(
                "SELECT message_id, received_sha256, receipt FROM inbox WHERE sender = 'EU' "
                f"ORDER BY {us_view.insertion_order}"
            )
            sent_log = eu_view.rows(
                "SELECT message_id, outcome FROM message_log WHERE direction = ?",
                (Direction.SENT.value,),
            )
            received_log = us_view.rows(
                "SELECT message_id, outcome FROM message_log WHERE direction = ?",
                (Direction.RECEIVED.value,),
            )
            changes_seen = _versions_in_inbox_order(us_view)
            history = us_view.rows(
                "SELECT authorisation_number, version FROM aeo_history "
                "WHERE owner = 'EU' AND authorisation_number <> '*' ORDER BY id"
            )

        # Every queued message delivered, with a verified US receipt for exactly its bytes.
        assert {state for _, _, state, *_ in outbox} == {"delivered"}, "dead or pending letters"
        trust = _trust(pki, "US")
        for message_id, _, _, envelope, digest, receipt in outbox:
            assert receipt is not None, message_id
            checked = open_receipt(Binding.PROTOBUF, receipt)
            assert checked.receipt.accepted and checked.receipt.message_id == message_id
            assert checked.receipt.received_sha256 == digest == hashlib.sha256(envelope).digest()
            verify_receipt(receipt, partner=US, trust=trust, message_id=message_id,
                           sent=envelope, now=utc_now())  # fmt: skip

        # Stored by US exactly once each, nothing else; resends were answered as duplicates.
        queued_ids = [str(row[0]) for row in outbox]
        stored_ids = [str(row[0]) for row in inbox]
        assert sorted(stored_ids) == sorted(queued_ids)
        by_id = {str(m): (digest, receipt) for m, digest, receipt in inbox}
        for message_id, _, _, _, digest, receipt in outbox:
            assert by_id[message_id] == (digest, receipt), f"{message_id}: US holds another copy"
        stored_count: dict[str, int] = defaultdict(int)
        for message_id, outcome in received_log:
            if outcome == LogOutcome.ACCEPTED:
                stored_count[str(message_id)] += 1
        assert stored_count == dict.fromkeys(queued_ids, 1)
        resends = sum(outcome == LogOutcome.DUPLICATE for _, outcome in received_log)
        print(
            f"sender crash: {changes} changes in {queued} envelopes, {at_kill} delivered at the "
            f"kill, {len(outbox)} in all, {resends} resend(s) answered as duplicates"
        )
        settled: dict[str, int] = defaultdict(int)
        for message_id, outcome in sent_log:
            assert outcome == LogOutcome.ACCEPTED, (message_id, outcome)
            settled[str(message_id)] += 1
        assert settled == dict.fromkeys(queued_ids, 1)

        # Order: US stored the messages of the key in the order EU queued them, and applied
        # each record's versions one by one, each once, in increasing order.
        assert stored_ids == queued_ids
        assert {key for _, key, *_ in outbox} == {"ub1:US"}
        per_record: dict[str, list[int]] = defaultdict(list)
        for number, version in changes_seen:
            per_record[number].append(int(version))
        applied: dict[str, list[int]] = defaultdict(list)
        for number, version in history:
            applied[str(number)].append(int(version))
        assert len(per_record) == N_RECORDS
        assert sum(len(v) for v in per_record.values()) == changes
        for number, versions in per_record.items():
            first = versions[0]
            assert versions == list(range(first, first + N_ROUNDS + 1)), number
            assert applied[number] == versions, number

        for config in (eu_config, us_config):
            verified = gncgw("log", "verify", "--config", str(config))
            assert verified.returncode == 0, verified.stdout + verified.stderr


# --- 3. kill during a UB1 full list -------------------------------------------------------------
def _count(view: StoreView, message_type: MessageType) -> int:
    return int(
        view.scalar("SELECT count(*) FROM inbox WHERE message_type = ?", (message_type.value,))
    )


def _held(view: StoreView) -> set[str]:
    rows = view.rows("SELECT authorisation_number FROM aeo_record WHERE owner = 'EU'")
    return {str(number) for (number,) in rows}


def _wait(what: str, node: ServeProcess, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            node.fail(f"not within {seconds} s: {what}")
        time.sleep(0.01)


def _stray_change(pki: testpki.TestPki, number_seed: int) -> tuple[str, bytes]:
    """A signed EU status change adding a record that is not in the EU's own list (as if the EU
    list had lost it since): only a full list that completes removes it at US."""
    profile = load_profile(US_PROFILE.read_text(), US_PROFILE.name)
    record = next(
        r
        for r in generate_records(50, number_seed)
        if r.status is AeoStatus.GRANTED and eligible_for(profile, r)
    )
    change = partner_delta(profile, None, record)
    assert change is not None
    data = aeo_exchange.encode(StatusChanges(EU, (change,)), PayloadForm.PROTOBUF)
    header = new_header(
        payload=data, utility_block=UtilityBlock.UB1,
        message_type=MessageType.STATUS_CHANGES.value, sender=EU, receiver=US,
        payload_content_type=CONTENT_TYPES[PayloadForm.PROTOBUF],
    )  # fmt: skip
    raw = seal_envelope(Binding.PROTOBUF, header, data, pki.identity("EU"))
    return record.authorisation_number, raw


def test_sender_killed_during_a_full_list_leaves_the_receiver_its_previous_list(
    backend: Backend, crash_pki: testpki.TestPki, tmp_path: Path, quiet_cli: None
) -> None:
    pki = crash_pki
    spec = load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)
    with store_urls(backend, tmp_path, ["eu", "us"]) as (eu_store, us_store):
        eu_port, us_port = free_port(), free_port()
        eu_config = write_gateway_config(
            tmp_path / "eu.toml", pki, "EU", "US", store_url=eu_store, grpc_port=eu_port,
            partner_endpoint=f"127.0.0.1:{us_port}", profile=US_PROFILE,
        )  # fmt: skip
        us_config = write_gateway_config(
            tmp_path / "us.toml", pki, "US", "EU", store_url=us_store, grpc_port=us_port,
            partner_endpoint=f"127.0.0.1:{eu_port}",
        )  # fmt: skip
        export = tmp_path / "eos.xml"
        export.write_bytes(write_eos_xml(generate_records(1000, 11), ExportKind.FULL, spec))
        assert main(["aeo", "import", str(export), "--config", str(eu_config)]) == 0

        with (
            ServeProcess(us_config, partner_tls(pki, "EU", "US")) as us,
            ServeProcess(eu_config, partner_tls(pki, "US", "EU")) as eu,
            StoreView(eu_store) as eu_view,
            StoreView(us_store) as us_view,
        ):
            us.start()
            eu.start()  # delivers the import's changes and the first full list

            def drained() -> bool:
                return not eu_view.scalar("SELECT count(*) FROM outbox WHERE state <> 'delivered'")

            def first_list_done() -> bool:  # the one gncgw serve queues at its first start
                return _count(us_view, MessageType.FULL_LIST_END) == 1 and drained()

            _wait("the first full list delivered", eu, first_list_done)
            listed = _held(us_view)
            stray, raw = _stray_change(pki, 99)
            assert stray not in listed
            with GrpcPartnerClient(us.target, tls=partner_tls(pki, "EU", "US")) as client:
                exchange = PartnerExchange(client, partner=US, trust=_trust(pki, "US"))
                assert exchange.deliver(raw).accepted
            previous = _held(us_view)
            assert previous == listed | {stray}
            eu.stop()

            # A full list in many small parts, then a kill after some parts arrived, before its end.
            ends = _count(us_view, MessageType.FULL_LIST_END)
            parts = _count(us_view, MessageType.FULL_LIST_PART)
            queued = main(["aeo", "sync", "--to", "US", "--part-size", "1",
                           "--config", str(eu_config)])  # fmt: skip
            assert queued == 0
            eu.start()
            _wait("two parts of the new full list stored by US", eu,
                  lambda: _count(us_view, MessageType.FULL_LIST_PART) >= parts + 2)  # fmt: skip
            eu.kill()
            if _count(us_view, MessageType.FULL_LIST_END) != ends:
                eu.fail("the full list completed before the kill: the crash hit nothing")
            staged = int(us_view.scalar("SELECT count(*) FROM aeo_staging_part"))
            assert staged >= 2
            assert _held(us_view) == previous, "US replaced its list with an incomplete one"

            eu.start()  # resumes the same full list from where it stopped
            _wait("the outbox drained after the restart", eu, drained)
            _wait("the new full list completed at US", eu,
                  lambda: _count(us_view, MessageType.FULL_LIST_END) == ends + 1)  # fmt: skip
            assert _held(us_view) == listed, "US does not hold exactly the EU list"
            eu.stop()
            us.stop()

        for config in (eu_config, us_config):
            verified = gncgw("log", "verify", "--config", str(config))
            assert verified.returncode == 0, verified.stdout + verified.stderr
