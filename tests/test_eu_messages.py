"""UB2 intake of EU messages: schema packs, CC315A / CC313A / DEC-DMS in, against the real
schemas and samples in ../shared/data (see tests/ub2_data.py for the skip/fail rule)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree
from ub2_data import (
    SHARED_DATA,
    cc313a_schema_cases,
    cds_declaration_samples,
    cds_notification_samples,
    cds_other_samples,
    ics_invalid_samples,
    ics_pack,
    ics_response_samples,
    ics_samples,
    ics_valid_samples,
    is_ics_invalid,
    shared_data,
    wco_dm_pack,
)

from gateway.errors import (
    UB2_NOT_XML,
    UB2_SCHEMA_INVALID,
    UB2_SCHEMA_PACK_INVALID,
    UB2_SCHEMA_PACK_MISSING,
    UB2_SOAP_INVALID,
    UB2_UNKNOWN_MESSAGE,
    UB2_WRONG_NAMESPACE,
    TransactionError,
)
from gateway.model.consignment import SourceMessage
from gateway.translate.eu_messages import (
    CC313A_NS,
    CC315A_NS,
    DEC_DMS_NS,
    PACK_FILES,
    SOAP12_NS,
    EuMessage,
    PackKind,
    SchemaPacks,
    load_schema_packs,
    location_namespaces,
    read_eu_message,
)

pytestmark = pytest.mark.shared_data

_PLAIN = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_DEC = f"{{{DEC_DMS_NS}}}"
_ELEMENT_NAMED = re.compile(r"Element '(?:[\w.-]+:)?([\w.-]+)'")
_EXPECTED = re.compile(r"Expected is (?:one of )?\(([^)]*)\)")


@pytest.fixture(scope="module")
def packs() -> SchemaPacks:
    return load_schema_packs(ics_pack(), wco_dm_pack())


def _refused(data: bytes, packs: SchemaPacks | None, **kwargs: bool) -> TransactionError:
    with pytest.raises(TransactionError) as caught:
        read_eu_message(data, packs, **kwargs)
    return caught.value


def _resolve(data: bytes, location: str | None, source: SourceMessage | None) -> etree._Element:
    """The one element a location names in the document as received (an independent parse)."""
    assert location, "a refusal must carry a location"
    document = etree.fromstring(data, _PLAIN).getroottree()
    found = document.xpath(location, namespaces=location_namespaces(source))
    assert isinstance(found, list) and len(found) == 1, f"{location} names {found!r}"
    node = found[0]
    assert isinstance(node, etree._Element)
    return node


def _ics_source(data: bytes) -> SourceMessage:
    return SourceMessage.CC313A if CC313A_NS.encode() in data else SourceMessage.CC315A


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


# --- schema packs ------------------------------------------------------------------------------


def test_packs_compile_and_list_what_they_need(packs: SchemaPacks) -> None:
    assert packs.ics_ens == ics_pack().absolute()
    assert packs.wco_dm == wco_dm_pack().absolute()
    for kind, names in PACK_FILES.items():
        directory = packs.directory(kind)
        assert directory is not None
        assert all((directory / name).is_file() for name in names)


def _linked_pack(tmp_path: Path, source: Path, skip: str = "") -> Path:
    """A pack of symlinks to the official files (nothing copied), optionally missing one."""
    pack = tmp_path / "pack"
    for path in source.rglob("*"):
        if path.is_file() and path.relative_to(source).as_posix() != skip:
            target = pack / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return pack


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        (PackKind.ICS_ENS, "simple_types-v11-2.xsd"),
        (PackKind.ICS_ENS, "CC313A-v11-2.xsd"),
        (PackKind.WCO_DM, "declaration/WCO_DS/WCO_DEC_DS_2_DMS.xsd"),
    ],
)
def test_a_pack_missing_a_file_is_refused_by_name(
    tmp_path: Path, kind: PackKind, missing: str
) -> None:
    source = ics_pack() if kind is PackKind.ICS_ENS else wco_dm_pack()
    pack = _linked_pack(tmp_path, source, skip=missing)
    with pytest.raises(TransactionError) as caught:
        if kind is PackKind.ICS_ENS:
            load_schema_packs(pack, None)
        else:
            load_schema_packs(None, pack)
    assert caught.value.code == UB2_SCHEMA_PACK_INVALID
    assert str(kind) in caught.value.message and missing in caught.value.message
    assert caught.value.location == str(pack / missing)


def test_a_symlinked_pack_loads(tmp_path: Path) -> None:
    packs = load_schema_packs(_linked_pack(tmp_path, ics_pack()), None)
    data = shared_data() / "ics-ens" / "examples" / "CC315A-schemaValidSample-v11-2.xml"
    assert read_eu_message(data.read_bytes(), packs).source is SourceMessage.CC315A


def test_a_pack_that_is_no_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TransactionError) as caught:
        load_schema_packs(tmp_path / "nowhere", None)
    assert caught.value.code == UB2_SCHEMA_PACK_INVALID
    assert "ics-ens" in caught.value.message


def _edited_pack(tmp_path: Path, name: str, old: bytes, new: bytes) -> Path:
    """The ICS pack as symlinks, with one schema replaced by an edited version of the real one."""
    pack = _linked_pack(tmp_path, ics_pack(), skip=name)
    original = (ics_pack() / name).read_bytes()
    assert old in original
    (pack / name).write_bytes(original.replace(old, new, 1))
    return pack


def test_a_schema_that_does_not_compile_is_refused_naming_the_file(tmp_path: Path) -> None:
    pack = _edited_pack(tmp_path, "simple_types-v11-2.xsd", b"<xs:simpleType", b"<xs:simpleTypo")
    with pytest.raises(TransactionError) as caught:
        load_schema_packs(pack, None)
    assert caught.value.code == UB2_SCHEMA_PACK_INVALID
    assert "simple_types-v11-2.xsd" in str(caught.value.location)


@pytest.mark.parametrize("outside", ["official-file", "http"])
def test_imports_resolve_only_inside_the_pack(tmp_path: Path, outside: str) -> None:
    """An import of a real, valid schema file outside the pack is refused, as is the network."""
    location = (
        str(ics_pack() / "doc-v11-2.xsd") if outside == "official-file" else "http://x/doc.xsd"
    )
    pack = _edited_pack(
        tmp_path,
        "CC315A-v11-2.xsd",
        b'schemaLocation="doc-v11-2.xsd"',
        f'schemaLocation="{location}"'.encode(),
    )
    with pytest.raises(TransactionError) as caught:
        load_schema_packs(pack, None)
    assert caught.value.code == UB2_SCHEMA_PACK_INVALID
    assert "not a file inside the pack" in caught.value.message
    assert caught.value.location is not None and "doc" in caught.value.location


def test_a_message_for_an_absent_pack_is_refused(packs: SchemaPacks) -> None:
    ics_only = load_schema_packs(ics_pack(), None)
    declaration = cds_declaration_samples()[0].read_bytes()
    error = _refused(declaration, ics_only)
    assert error.code == UB2_SCHEMA_PACK_MISSING and "wco-dm" in error.message
    cc315a = ics_valid_samples()[0].read_bytes()
    assert _refused(cc315a, load_schema_packs(None, wco_dm_pack())).code == (
        UB2_SCHEMA_PACK_MISSING
    )
    assert _refused(cc315a, None).code == UB2_SCHEMA_PACK_MISSING
    # Not validating needs no pack (for a message validated before).
    assert read_eu_message(cc315a, None, validate=False).root is not None


# --- ICS samples -------------------------------------------------------------------------------


def test_the_sample_lists_follow_the_readme() -> None:
    names = {p.name for p in ics_samples()}
    assert {"CC315A_full.xml", "CC315A_reduced.xml", "CC313A_reduced.xml"} <= names
    assert any("WithEnvelope" in p.name for p in ics_valid_samples())
    assert len(ics_invalid_samples()) >= 6


@pytest.mark.parametrize("path", ics_valid_samples() if SHARED_DATA.is_dir() else [], ids=str)
def test_valid_ics_samples_are_read(packs: SchemaPacks, path: Path) -> None:
    data = path.read_bytes()
    message = read_eu_message(data, packs)
    assert message.source is _ics_source(data)
    assert _local(message.root) == message.source.value
    assert message.wrapped == ("soap12" if "WithEnvelope" in path.name else None)
    assert message.base_path.startswith("/soap:Envelope/soap:Body/" if message.wrapped else "/ie:")
    resolved = _resolve(data, message.base_path, message.source)
    assert resolved.sourceline == message.root.sourceline and _local(resolved) == _local(
        message.root
    )


@pytest.mark.parametrize("path", ics_invalid_samples() if SHARED_DATA.is_dir() else [], ids=str)
def test_invalid_ics_samples_are_refused_at_the_element(packs: SchemaPacks, path: Path) -> None:
    assert is_ics_invalid(path)
    data = path.read_bytes()
    error = _refused(data, packs)
    assert error.code == UB2_SCHEMA_INVALID
    element = _resolve(data, error.location, _ics_source(data))
    named = _ELEMENT_NAMED.search(error.message)
    assert named is not None and _local(element) == named.group(1)
    assert f"line {element.sourceline}:" in error.message


def test_ics_responses_are_not_messages_to_translate(packs: SchemaPacks) -> None:
    for path in ics_response_samples():
        data = path.read_bytes()
        error = _refused(data, packs)
        assert error.code == UB2_UNKNOWN_MESSAGE
        assert _resolve(data, error.location, None).getparent() is None


# --- schema-cases-cc313a -----------------------------------------------------------------------


def _ctl_texts(case: Path) -> list[str]:
    control = etree.parse(str(case.with_suffix(".ctl")), _PLAIN)
    return [
        "".join(t.itertext())
        for t in control.iter("{http://www.govtalk.gov.uk/CM/errorresponse}Text")
    ]


def _new_variant_accepts(data: bytes) -> bool:
    """Whether HMRC's relaxed ``CC313A-v11-2-New.xsd`` (in the same folder) accepts it."""
    schema = etree.XMLSchema(etree.parse(str(ics_pack() / "CC313A-v11-2-New.xsd"), _PLAIN))
    return schema.validate(etree.fromstring(data, _PLAIN))


def test_cc313a_schema_cases(packs: SchemaPacks) -> None:
    """Each X.xml is refused at the element its X.ctl names; cases whose .ctl lists no error
    are read, unless they rely on HMRC's relaxed -New variant of the schema (reported)."""
    cases = cc313a_schema_cases()
    assert cases
    outcomes: Counter[str] = Counter()
    for case in cases:
        data = case.read_bytes()
        texts = _ctl_texts(case)
        if not texts:
            try:
                message = read_eu_message(data, packs)
            except TransactionError as exc:
                assert exc.code == UB2_SCHEMA_INVALID, case.name
                assert _new_variant_accepts(data), f"{case.name}: {exc}"
                outcomes["valid only under -New"] += 1
            else:
                assert message.source is SourceMessage.CC313A
                outcomes["valid"] += 1
            continue
        error = _refused(data, packs)
        assert error.code == UB2_SCHEMA_INVALID, case.name
        element = _resolve(data, error.location, SourceMessage.CC313A)
        named = {n.upper() for text in texts for n in re.findall(r"\[([A-Za-z0-9]+)\]", text)}
        expected = _EXPECTED.search(error.message)
        expected_names = (
            {n.strip().upper() for n in expected.group(1).split(",")} if expected else set()
        )
        assert _local(element).upper() in named or named & expected_names, (
            f"{case.name}: {error.location} / {error.message} vs {texts}"
        )
        outcomes["refused at the named element"] += 1
    print(f"\nschema-cases-cc313a: {dict(outcomes)}")
    assert outcomes["refused at the named element"] >= len(cases) - 3


# --- DEC-DMS samples ---------------------------------------------------------------------------


def _independent_view(data: bytes) -> etree._Element | None:
    try:
        return etree.fromstring(data, _PLAIN)
    except etree.XMLSyntaxError:
        return None


def test_cds_declaration_samples(packs: SchemaPacks) -> None:
    samples = cds_declaration_samples()
    assert samples
    counts: Counter[str] = Counter()
    diagnosed = 0
    for number, path in enumerate(samples):
        data = path.read_bytes()
        plain = _independent_view(data)
        scenario = next((p for p in path.parts if p.startswith("TT_")), "")
        try:
            message = read_eu_message(data, packs)
        except TransactionError as exc:
            assert exc.location, f"{path}: {exc}"
            counts[exc.code] += 1
            if exc.code == UB2_NOT_XML:
                assert plain is None, path  # libxml2 alone also refuses it
            elif exc.code == UB2_UNKNOWN_MESSAGE:
                assert plain is not None
                declarations = list(plain.iter(f"{_DEC}Declaration"))
                # a request (amendment, invalidation, presentation) or no DEC-DMS declaration
                assert not declarations or declarations[0].findtext(f"{_DEC}FunctionCode") != "9"
                if declarations:
                    _resolve(data, exc.location, None)
            else:
                assert exc.code == UB2_SCHEMA_INVALID, f"{path}: {exc}"
                _resolve(data, exc.location, None)
            continue
        counts[message.source.value] += 1
        assert plain is not None
        assert _resolve(data, message.base_path, message.source).tag == f"{_DEC}Declaration"
        assert message.wrapped == (
            "hmrc-request" if _local(plain) == "submitDeclarationRequest" else "metadata"
        )
        if scenario.startswith("TT_EX"):
            assert message.source is SourceMessage.DEC_DMS_EXPORT, path
        elif scenario.startswith("TT_IM"):
            assert message.source is SourceMessage.DEC_DMS_IMPORT, path
        if number % 100 == 0:  # libxml2 and xmlschema agree that it is valid
            assert packs.diagnose(message) == [], path
            diagnosed += 1
    print(f"\nDEC-DMS declaration samples: {len(samples)}: {dict(counts)}")
    read = counts[SourceMessage.DEC_DMS_EXPORT.value] + counts[SourceMessage.DEC_DMS_IMPORT.value]
    assert counts[SourceMessage.DEC_DMS_EXPORT.value] and counts[SourceMessage.DEC_DMS_IMPORT.value]
    assert read > len(samples) * 0.8
    assert diagnosed


def test_cds_notifications_and_other_messages_are_unknown(packs: SchemaPacks) -> None:
    notifications = cds_notification_samples()
    others = cds_other_samples()
    assert notifications and others
    for path in [*notifications, *others]:
        data = path.read_bytes()
        error = _refused(data, packs)
        assert error.code == UB2_UNKNOWN_MESSAGE, f"{path}: {error}"
        _resolve(data, error.location, None)
    sample = _refused(notifications[0].read_bytes(), packs)
    assert "notification" in sample.message


def _declaration_sample(wrapper: str) -> Path:
    for path in cds_declaration_samples():
        head = path.read_bytes()[:4000]
        if wrapper in head.decode("utf-8", "replace") and "TT_EX" in str(path):
            return path
    raise AssertionError(f"no sample wrapped in {wrapper}")


def test_a_broken_dec_dms_declaration_points_at_the_element(packs: SchemaPacks) -> None:
    """Through HMRC's wrapper, MetaData and the default namespace (libxml2 writes ``*[n]``)."""
    data = _declaration_sample("submitDeclarationRequest").read_bytes()
    plain = etree.fromstring(data, _PLAIN)
    items = list(plain.iter(f"{_DEC}GovernmentAgencyGoodsItem"))
    target = items[-1].find(f"{_DEC}SequenceNumeric")
    assert target is not None
    target.text = "not-a-number"
    broken = etree.tostring(plain)
    error = _refused(broken, packs)
    assert error.code == UB2_SCHEMA_INVALID
    assert str(error.location).startswith("/hmrc:submitDeclarationRequest/hmrc:requestDetail/")
    found = _resolve(broken, error.location, None)
    assert found.text == "not-a-number" and _local(found) == "SequenceNumeric"
    findings = packs.diagnose(read_eu_message(broken, packs, validate=False))
    assert findings and findings[0].path == error.location


def test_a_bare_declaration_is_validated_alone(packs: SchemaPacks) -> None:
    plain = etree.fromstring(_declaration_sample("md:MetaData").read_bytes(), _PLAIN)
    declaration = plain.find(f"{_DEC}Declaration")
    assert declaration is not None
    data = etree.tostring(declaration)
    message = read_eu_message(data, packs)
    assert message.wrapped is None and message.base_path == "/dec:Declaration"
    assert message.source is SourceMessage.DEC_DMS_EXPORT
    type_code = declaration.find(f"{_DEC}TypeCode")
    assert type_code is not None
    etree.SubElement(declaration, f"{_DEC}Bogus")
    error = _refused(etree.tostring(declaration), packs)
    assert error.code == UB2_SCHEMA_INVALID
    assert _local(_resolve(etree.tostring(declaration), error.location, None)) == "Bogus"


# --- SOAP --------------------------------------------------------------------------------------


def _cc315a() -> bytes:
    return (
        shared_data() / "ics-ens" / "examples" / "CC315A-schemaValidSample-v11-2.xml"
    ).read_bytes()


def _soap(body: bytes, header: bytes = b"<soap:Header/>", namespace: str = SOAP12_NS) -> bytes:
    inner = re.sub(rb"^<\?xml[^>]*\?>", b"", body.strip())
    return (
        f'<soap:Envelope xmlns:soap="{namespace}">'.encode()
        + header
        + b"<soap:Body>"
        + inner
        + b"</soap:Body></soap:Envelope>"
    )


def test_soap_wrapped_message_errors_point_through_the_envelope(packs: SchemaPacks) -> None:
    invalid = (shared_data() / "ics-ens" / "examples" / "CC315A_reduced.xml").read_bytes()
    data = _soap(invalid)
    error = _refused(data, packs)
    assert error.code == UB2_SCHEMA_INVALID
    assert str(error.location).startswith("/soap:Envelope/soap:Body/ie:CC315A/")
    assert _local(_resolve(data, error.location, SourceMessage.CC315A)) == "TotGroMasHEA307"


@pytest.mark.parametrize(
    ("body", "header", "points_at"),
    [
        (b"", b"", "Body"),
        (b"TWICE", b"", "CC315A"),
        (
            b"<soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code>"
            b'<soap:Reason><soap:Text xml:lang="en">busy</soap:Text></soap:Reason></soap:Fault>',
            b"",
            "Fault",
        ),
        (
            b"ONE",
            b'<soap:Header><x:Sec xmlns:x="urn:x" soap:mustUnderstand="true"/></soap:Header>',
            "Sec",
        ),
        (  # xs:boolean collapses whitespace: " true " is true too
            b"ONE",
            b'<soap:Header><x:Sec xmlns:x="urn:x" soap:mustUnderstand=" true "/></soap:Header>',
            "Sec",
        ),
    ],
    ids=["empty-body", "two-messages", "fault", "must-understand", "must-understand-spaced"],
)
def test_malformed_soap_is_refused(
    packs: SchemaPacks, body: bytes, header: bytes, points_at: str
) -> None:
    message = re.sub(rb"^<\?xml[^>]*\?>", b"", _cc315a().strip())
    content = {b"TWICE": message + message, b"ONE": message}.get(body, body)
    data = _soap(content, header or b"<soap:Header/>")
    error = _refused(data, packs)
    assert error.code == UB2_SOAP_INVALID
    element = _resolve(data, error.location, SourceMessage.CC315A)
    assert _local(element) == points_at
    if points_at == "CC315A":
        assert element.getprevious() is not None  # the second message, not the first
    if points_at == "Fault":
        assert "busy" in error.message


def test_soap_1_1_is_a_wrong_namespace(packs: SchemaPacks) -> None:
    data = _soap(_cc315a(), namespace="http://schemas.xmlsoap.org/soap/envelope/")
    error = _refused(data, packs)
    assert error.code == UB2_WRONG_NAMESPACE and "SOAP 1.2" in error.message


# --- wrong namespace, unknown messages, attacks -------------------------------------------------


@pytest.mark.parametrize(
    "namespace", [CC313A_NS, "http://ics.dgtaxud.ec/CC315B", ""], ids=["cc313a-ns", "typo", "none"]
)
def test_a_known_root_in_a_wrong_namespace(packs: SchemaPacks, namespace: str) -> None:
    data = _cc315a().replace(f'xmlns:ie="{CC315A_NS}"'.encode(), f'xmlns:ie="{namespace}"'.encode())
    if not namespace:
        data = data.replace(b'<ie:CC315A xmlns:ie="">', b"<CC315A>").replace(
            b"</ie:CC315A>", b"</CC315A>"
        )
    error = _refused(data, packs)
    assert error.code == UB2_WRONG_NAMESPACE
    assert CC315A_NS in error.message


def test_unknown_roots_are_named(packs: SchemaPacks) -> None:
    cc323a = b'<ie:CC323A xmlns:ie="http://ics.dgtaxud.ec/CC323A"><MesSenMES3/></ie:CC323A>'
    error = _refused(cc323a, packs)
    assert error.code == UB2_UNKNOWN_MESSAGE and "CC323A" in error.message
    error = _refused(b"<invoice><total>1</total></invoice>", packs)
    assert error.code == UB2_UNKNOWN_MESSAGE and "invoice" in error.message
    assert error.location == "/invoice"


_CC315A_HEAD = b'<ie:CC315A xmlns:ie="http://ics.dgtaxud.ec/CC315A"><MesSenMES3>'
_CC315A_TAIL = b"</MesSenMES3></ie:CC315A>"


@pytest.mark.parametrize(
    ("data", "intake_code"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + _CC315A_HEAD
            + b"&xxe;"
            + _CC315A_TAIL,
            "XML_DTD_FORBIDDEN",
        ),
        (
            b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]>'
            + _CC315A_HEAD
            + b"&lol3;"
            + _CC315A_TAIL,
            "XML_DTD_FORBIDDEN",
        ),
        (_CC315A_HEAD + b"&xxe;" + _CC315A_TAIL, "XML_ENTITY_FORBIDDEN"),
        (_CC315A_HEAD + b"<a>" * 100 + b"</a>" * 100 + _CC315A_TAIL, "XML_TOO_DEEP"),
        (_CC315A_HEAD + b"unclosed" + b"</ie:CC315A>", "XML_NOT_WELL_FORMED"),
    ],
    ids=["xxe", "billion-laughs", "undeclared-entity", "too-deep", "not-well-formed"],
)
def test_hostile_or_broken_xml_is_not_xml(
    packs: SchemaPacks, data: bytes, intake_code: str
) -> None:
    error = _refused(data, packs)
    assert error.code == UB2_NOT_XML
    assert error.message.startswith(intake_code)
    assert error.location
    assert isinstance(error.__cause__, Exception)


def test_an_oversized_message_is_not_xml(packs: SchemaPacks) -> None:
    from gateway.translate.eu_messages import MAX_MESSAGE_BYTES

    error = _refused(_CC315A_HEAD + b" " * MAX_MESSAGE_BYTES + _CC315A_TAIL, packs)
    assert error.code == UB2_NOT_XML and error.message.startswith("XML_TOO_LARGE")


# --- diagnosis, locations, threads --------------------------------------------------------------


def test_diagnose_lists_every_error_at_its_element(packs: SchemaPacks) -> None:
    path = shared_data() / "ics-ens" / "examples" / "CC315A_full.xml"
    data = path.read_bytes()
    first = _refused(data, packs)
    findings = packs.diagnose(read_eu_message(data, packs, validate=False))
    assert len(findings) > 1
    assert findings[0].path == first.location
    lines = [f.line or 0 for f in findings]
    assert lines == sorted(lines)
    for finding in findings:
        assert finding.reason and finding.line
        assert _resolve(data, finding.path, SourceMessage.CC315A).sourceline == finding.line
    assert any(f.expected for f in findings)
    assert packs.diagnose(read_eu_message(_cc315a(), packs)) == []


def test_path_of_resolves_back_to_the_element(packs: SchemaPacks) -> None:
    data = (
        shared_data() / "ics-ens" / "examples" / "CC313A-schemaValidSampleWithEnvelope-v11-2.xml"
    ).read_bytes()
    message = read_eu_message(data, packs)
    assert isinstance(message, EuMessage) and message.source is SourceMessage.CC313A
    document = etree.fromstring(data, _PLAIN).getroottree()
    for element in message.root.iter("{*}*"):
        path = message.path_of(element)
        assert path.startswith(message.base_path)
        (found,) = document.xpath(path, namespaces=message.namespaces)
        assert isinstance(found, etree._Element) and found.sourceline == element.sourceline


def test_validators_are_per_thread(packs: SchemaPacks) -> None:
    good = _cc315a()
    bad = shared_data() / "ics-ens" / "examples" / "CC315A-schemaInvalidSample-v11-2.xml"
    bad_data = bad.read_bytes()
    expected = _refused(bad_data, packs).location
    failures: list[str] = []

    def work(data: bytes, valid: bool) -> None:
        for _ in range(60):
            try:
                read_eu_message(data, packs)
                if not valid:
                    failures.append("invalid accepted")
            except TransactionError as exc:
                if valid or exc.location != expected:
                    failures.append(str(exc))

    threads = [
        threading.Thread(target=work, args=(d, v)) for d, v in ((good, True), (bad_data, False))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_soap_around_dec_dms_wrappers(packs: SchemaPacks) -> None:
    for wrapper, inner in (("md:MetaData", "md:MetaData"), ("submitDeclarationRequest", "hmrc:")):
        data = _soap(_declaration_sample(wrapper).read_bytes())
        message = read_eu_message(data, packs)
        assert message.wrapped == "soap12"
        assert message.base_path.startswith("/soap:Envelope/soap:Body/" + inner)
        assert message.base_path.endswith("/md:MetaData/dec:Declaration")
        assert _resolve(data, message.base_path, message.source).tag == f"{_DEC}Declaration"
    nested = _soap(_soap(_cc315a()))
    error = _refused(nested, packs)
    assert (
        error.code == UB2_SOAP_INVALID
        and error.location == "/soap:Envelope/soap:Body/soap:Envelope"
    )
