"""The gateway node's TOML configuration: read, checked completely at start-up, then built.

A node that starts must be able to work: every file is read and parsed, each private key is
matched with its certificate, the partners' CAs, CRLs and pinned signers are assembled into the
trust store, and the store URL is checked, before anything listens. Each problem is one
ConfigError (CFG_INVALID) whose message names the key, e.g.::

    config error: partners[1].ca[0]: file not found: /etc/gncgw/pki/US/ca.pem

Indexes count from 0, in file order. Relative paths resolve against the directory of the
configuration file. Unknown keys are errors (a misspelt optional key would otherwise be silently
ignored). docs/configuration.md describes every key.
"""

from __future__ import annotations

import logging
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.envelope.intake import IntakeLimits
from gateway.envelope.keys import SigningIdentity, load_identity
from gateway.envelope.opened import Binding
from gateway.errors import (
    ConfigError,
    DeliveryError,
    GatewayError,
)
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.node import GatewayNode
from gateway.ops.logs import LogFormat
from gateway.partners.handling import HandlingRules, load_handling_rules
from gateway.partners.profile import PartnerProfile, load_profile
from gateway.store.inbox import SqliteInbox
from gateway.store.message_log import SqliteMessageLog
from gateway.transport.tls import ClientTls, TlsIdentity, split_host_port
from gateway.trust.loading import (
    administration,
    allowed_signer_from_pem,
    certificates_from_pem,
    crls_from_bytes,
)
from gateway.trust.store import (
    AllowedSigner,
    PartnerTrust,
    TrustStore,
    crl_form_problem,
    crl_signed_by,
    issued_by,
)

if TYPE_CHECKING:
    from gateway.model.consignment import SourceMessage
    from gateway.translate.eu_messages import SchemaPacks
    from gateway.translate.ub2_pipeline import Ub2Pipeline
    from gateway.translate.ub2_translate import MappingSpec

log = logging.getLogger("gateway.config")
_T = TypeVar("_T")

MAX_ENVELOPE_BYTES_CAP = 256 * 1024 * 1024  # above this a typo is likelier than a real need


class PartnerBinding(StrEnum):
    """How a partner is reached: gRPC (protobuf envelopes) or XML over HTTPS."""

    GRPC = "grpc"
    XML = "xml"


@dataclass(frozen=True)
class SignerConfig:
    """A pinned signing certificate of a partner; `until` closes its rotation window."""

    cert: Path
    until: datetime | None = None


@dataclass(frozen=True)
class PartnerConfig:
    administration: Administration
    binding: PartnerBinding
    endpoint: str  # host:port for grpc, https URL for xml
    ca: tuple[Path, ...]
    crl: tuple[Path, ...] = ()
    # Issuing CAs under `ca` whose CRLs are configured under `crl` (their certificates still
    # travel with each chain: a peer sends its intermediate, it is not taken from here).
    intermediates: tuple[Path, ...] = ()
    signers: tuple[SignerConfig, ...] | None = None  # None: any signing cert its CAs issue
    require_crl: bool = True
    tls_server_name: str | None = None  # name to check in its TLS certificate, if not the host
    # The partner's profile (agreement, UB1 rules, retry policy, delivery rules), if linked.
    profile: PartnerProfile | None = field(default=None, compare=False)
    profile_path: Path | None = None
    # UB3 handling rules (adapters/handling/*.toml): what this partner may be sent, if linked.
    handling: HandlingRules | None = field(default=None, compare=False)
    handling_path: Path | None = None

    @property
    def envelope_binding(self) -> Binding:
        """The envelope binding its transport carries (gRPC: protobuf; XML over HTTPS: XML)."""
        return Binding.XML if self.binding is PartnerBinding.XML else Binding.PROTOBUF


@dataclass(frozen=True)
class MetricsConfig:
    """`[metrics]`: where `gncgw serve` serves /metrics, /healthz and /readyz (None: off)."""

    listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class DeliveryConfig:
    """The outbox delivery worker of `gncgw serve`."""

    poll_seconds: float = 1.0  # pause between passes that found nothing due
    # How long a node's claim on outbox messages holds unless settled (several nodes on one
    # PostgreSQL database: a crashed node's messages are taken over after this).
    lease_seconds: float = 30.0


@dataclass(frozen=True)
class ListenConfig:
    grpc: tuple[str, int] | None = None
    xml: tuple[str, int] | None = None


@dataclass(frozen=True)
class GatewayConfig:
    """A checked configuration, with the key material already loaded from its files."""

    path: Path
    administration: Administration
    signing_key: Path
    signing_cert: Path
    tls_key: Path
    tls_cert: Path
    store_path: Path | None  # the SQLite file; None when the store is PostgreSQL
    listen: ListenConfig
    limits: IntakeLimits
    partners: tuple[PartnerConfig, ...]
    delivery: DeliveryConfig = DeliveryConfig()
    metrics: MetricsConfig = MetricsConfig()
    log_format: LogFormat = LogFormat.TEXT  # [logging] format; gncgw serve --log-format wins
    ub2: Ub2Config | None = None  # [ub2]: schema packs and mapping specs, loaded and checked
    # What the store opens (gateway.store.database.open_database): sqlite:////ABSOLUTE/PATH or
    # postgresql://USER@HOST:PORT/DB.
    store_url: str = field(kw_only=True)
    # `[gateway] node_id`: this node in outbox claims and logs (default hostname:pid).
    node_id: str = field(default="", kw_only=True)
    signing_identity: SigningIdentity = field(repr=False, compare=False, kw_only=True)
    tls_identity: TlsIdentity = field(repr=False, compare=False, kw_only=True)
    trust: TrustStore = field(repr=False, compare=False, kw_only=True)
    partner_roots_pem: Mapping[Administration, bytes] = field(
        repr=False, compare=False, kw_only=True
    )

    def partner(self, code: Administration | str) -> PartnerConfig:
        admin = administration(code)
        for partner in self.partners:
            if partner.administration is admin:
                return partner
        raise ConfigError(
            f"config error: partners: no partner {admin.value} is configured "
            f"(configured: {', '.join(p.administration.value for p in self.partners)})",
            location=str(self.path),
        )

    def client_tls(self, code: Administration | str) -> ClientTls:
        """Mutual-TLS material for calling this partner: our TLS identity, its CA(s) only."""
        partner = self.partner(code)
        return ClientTls(
            self.tls_identity,
            self.partner_roots_pem[partner.administration],
            partner.tls_server_name,
        )


# --- reading ---------------------------------------------------------------------------------
class _Reader:
    """Walks the parsed TOML, failing with the dotted key of whatever is wrong."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, key: str, detail: str) -> NoReturn:
        raise ConfigError(f"config error: {key}: {detail}", location=str(self.path))

    def check_table(
        self, value: Any, key: str, known: tuple[str, ...], *, required: bool = True
    ) -> dict[str, Any]:
        if value is None:
            if required:
                self.fail(key, "missing table")
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a table, not {_kind(value)}")
        for name in value:
            if name not in known:
                self.fail(f"{key}.{name}", f"unknown key (known: {', '.join(known)})")
        return value

    def string(
        self, table: Mapping[str, Any], key: str, name: str, *, required: bool = True
    ) -> str:
        value = table.get(name)
        if value is None:
            if required:
                self.fail(f"{key}.{name}", "missing")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{key}.{name}", f"must be a non-empty string, not {_kind(value)}")
        return value.strip()

    def integer(
        self, table: Mapping[str, Any], key: str, name: str, default: int, low: int, high: int
    ) -> int:
        value = table.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"{key}.{name}", f"must be an integer, not {_kind(value)}")
        if not low <= value <= high:
            self.fail(f"{key}.{name}", f"{value} is outside {low}..{high}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            self.fail(f"{key}.{name}", f"must be true or false, not {_kind(value)}")
        return value

    def file(self, value: Any, key: str) -> tuple[Path, bytes]:
        if value is None:
            self.fail(key, "missing")
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a file path (string), not {_kind(value)}")
        path = (self.base / value.strip()).resolve()
        if not path.exists():
            self.fail(key, f"file not found: {path}")
        if not path.is_file():
            self.fail(key, f"not a regular file: {path}")
        try:
            return path, path.read_bytes()
        except OSError as exc:
            self.fail(key, f"cannot read {path}: {exc.strerror}")

    def files(self, table: Mapping[str, Any], key: str, name: str) -> list[tuple[str, Path, bytes]]:
        """A path or a list of paths; each with the key naming it (e.g. partners[0].ca[1])."""
        value = table.get(name)
        if value is None:
            return []
        if isinstance(value, str):
            return [(f"{key}.{name}", *self.file(value, f"{key}.{name}"))]
        if not isinstance(value, list):
            self.fail(f"{key}.{name}", f"must be a path or a list of paths, not {_kind(value)}")
        out = []
        for index, item in enumerate(value):
            item_key = f"{key}.{name}[{index}]"
            out.append((item_key, *self.file(item, item_key)))
        return out

    def wrap(self, key: str, action: Callable[[], _T]) -> _T:
        """Run a loader, re-raising its ConfigError with the key that named the input."""
        try:
            return action()
        except GatewayError as error:
            self.fail(key, error.message)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date):
        return f"a date/time ({value})"
    return type(value).__name__


_TOP = (
    "gateway", "store", "listen", "intake", "delivery", "partners", "metrics", "logging", "ub2",
)  # fmt: skip
_GATEWAY = ("administration", "signing_key", "signing_cert", "tls_key", "tls_cert", "node_id")
_STORE = ("url",)
_LISTEN = ("grpc", "xml")
_INTAKE = ("max_envelope_bytes", "clock_skew_seconds", "max_age_seconds")
_PARTNER = (
    "administration",
    "binding",
    "endpoint",
    "ca",
    "intermediates",
    "crl",
    "require_crl",
    "signers",
    "tls_server_name",
    "profile",
    "handling",
)
_DELIVERY = ("poll_seconds", "lease_seconds")
_METRICS = ("listen",)
_LOGGING = ("format",)
_SIGNER = ("cert", "until")


def load_config(path: Path | str, *, now: datetime | None = None) -> GatewayConfig:
    """Read and check a configuration file; every problem is a ConfigError naming its key."""
    path = Path(path).resolve()
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"config error: cannot read {path}: {exc.strerror}", location=str(path)
        ) from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config error: not UTF-8: {exc}", location=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error: not valid TOML: {exc}", location=str(path)) from None
    return _build(_Reader(path), data, now or utc_now())


def _build(r: _Reader, data: dict[str, Any], now: datetime) -> GatewayConfig:
    for name in data:
        if name not in _TOP:
            r.fail(name, f"unknown key (known: {', '.join(_TOP)})")
    gw = r.check_table(data.get("gateway"), "gateway", _GATEWAY)
    own = r.wrap(
        "gateway.administration",
        lambda: administration(r.string(gw, "gateway", "administration")),
    )

    signing_key, signing_key_pem = r.file(gw.get("signing_key"), "gateway.signing_key")
    signing_cert, signing_cert_pem = r.file(gw.get("signing_cert"), "gateway.signing_cert")
    identity: SigningIdentity = r.wrap(
        "gateway.signing_key",
        lambda: _identity(own, signing_key_pem, signing_cert_pem, signing_cert),
    )
    _check_current(r, "gateway.signing_cert", identity.certificate, now)

    tls_key, tls_key_pem = r.file(gw.get("tls_key"), "gateway.tls_key")
    tls_cert, tls_cert_pem = r.file(gw.get("tls_cert"), "gateway.tls_cert")
    tls_identity: TlsIdentity = r.wrap(
        "gateway.tls_key", lambda: TlsIdentity(tls_key_pem, tls_cert_pem)
    )
    tls_leaf = r.wrap("gateway.tls_cert", lambda: certificates_from_pem(tls_cert_pem)[0])
    if _public_der(tls_leaf) != _public_der(
        serialization.load_pem_private_key(tls_key_pem, password=None).public_key()
    ):
        r.fail("gateway.tls_key", f"private key does not belong to gateway.tls_cert ({tls_cert})")
    _check_current(r, "gateway.tls_cert", tls_leaf, now)

    store = r.check_table(data.get("store"), "store", _STORE)
    store_url, store_path = _store_url(r, r.string(store, "store", "url"))

    listen_table = r.check_table(data.get("listen"), "listen", _LISTEN, required=False)
    listen = ListenConfig(
        grpc=_address(r, listen_table, "grpc"), xml=_address(r, listen_table, "xml")
    )

    intake = r.check_table(data.get("intake"), "intake", _INTAKE, required=False)
    defaults = IntakeLimits()
    limits = IntakeLimits(
        max_envelope_bytes=r.integer(
            intake,
            "intake",
            "max_envelope_bytes",
            defaults.max_envelope_bytes,
            1024,
            MAX_ENVELOPE_BYTES_CAP,
        ),
        clock_skew=timedelta(
            seconds=r.integer(
                intake,
                "intake",
                "clock_skew_seconds",
                int(defaults.clock_skew.total_seconds()),
                0,
                86_400,
            )
        ),
        max_age=timedelta(
            seconds=r.integer(
                intake,
                "intake",
                "max_age_seconds",
                int(defaults.max_age.total_seconds()),
                60,
                366 * 86_400,
            )
        ),
    )

    delivery_table = r.check_table(data.get("delivery"), "delivery", _DELIVERY, required=False)
    delivery = DeliveryConfig(
        poll_seconds=_poll_seconds(r, delivery_table),
        lease_seconds=_lease_seconds(r, delivery_table),
    )
    metrics, log_format = _operations(r, data)
    ub2 = _ub2(r, data.get("ub2"))

    partners_value = data.get("partners")
    if partners_value is None:
        r.fail("partners", "missing: configure at least one [[partners]] table")
    if not isinstance(partners_value, list) or not partners_value:
        r.fail("partners", "must be one or more [[partners]] tables")
    partners: list[PartnerConfig] = []
    trusts: list[PartnerTrust] = []
    roots: dict[Administration, bytes] = {}
    seen: dict[Administration, int] = {}
    for index, value in enumerate(partners_value):
        partner, trust, roots_pem = _partner(r, index, value, own, now)
        if partner.administration in seen:
            r.fail(
                f"partners[{index}].administration",
                f"partner {partner.administration.value} is already configured in "
                f"partners[{seen[partner.administration]}]",
            )
        seen[partner.administration] = index
        partners.append(partner)
        trusts.append(trust)
        roots[partner.administration] = roots_pem
    trust_store: TrustStore = r.wrap("partners", lambda: TrustStore(trusts))

    return GatewayConfig(
        path=r.path,
        administration=own,
        signing_key=signing_key,
        signing_cert=signing_cert,
        tls_key=tls_key,
        tls_cert=tls_cert,
        store_path=store_path,
        store_url=store_url,
        node_id=_node_id(r, gw),
        listen=listen,
        limits=limits,
        partners=tuple(partners),
        delivery=delivery,
        metrics=metrics,
        log_format=log_format,
        ub2=ub2,
        signing_identity=identity,
        tls_identity=tls_identity,
        trust=trust_store,
        partner_roots_pem=roots,
    )


def _identity(
    own: Administration, key_pem: bytes, cert_pem: bytes, cert_path: Path
) -> SigningIdentity:
    try:
        return load_identity(own, key_pem, cert_pem)
    except ConfigError as error:
        if "does not belong" in error.message or "different kinds" in error.message:
            raise ConfigError(
                f"private key does not belong to gateway.signing_cert ({cert_path})"
            ) from None
        raise


def _public_der(key_or_cert: Any) -> bytes:
    key = key_or_cert.public_key() if isinstance(key_or_cert, x509.Certificate) else key_or_cert
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _check_current(r: _Reader, key: str, cert: x509.Certificate, now: datetime) -> None:
    if now > cert.not_valid_after_utc:
        r.fail(key, f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
    if now < cert.not_valid_before_utc:
        r.fail(key, f"certificate is not valid before {cert.not_valid_before_utc.isoformat()}")


def _store_url(r: _Reader, url: str) -> tuple[str, Path | None]:
    """(URL to open, SQLite file or None): ``sqlite:///relative/to/config/dir.db``,
    ``sqlite:////absolute/path.db`` (SQLAlchemy style) or ``postgresql://user@host:port/db``."""
    key = "store.url"
    scheme, sep, rest = url.partition("://")
    if not sep:
        r.fail(key, f"{url!r} is not a URL; use sqlite:///inbox.db (relative) or sqlite:////abs")
    if scheme in {"postgresql", "postgresql+psycopg"}:
        host = urllib.parse.urlsplit(url)
        if not host.hostname or not host.path.strip("/") or host.query:
            r.fail(key, f"{url!r}: write postgresql://USER@HOST:PORT/DATABASE")
        return url, None
    if scheme != "sqlite":
        r.fail(key, f"store scheme {scheme!r} is not supported (supported: sqlite, postgresql)")
    if not rest.startswith("/"):
        r.fail(
            key, f"{url!r}: write sqlite:/// followed by the file path (host part must be empty)"
        )
    raw = urllib.parse.unquote(rest[1:])
    if not raw or raw == ":memory:" or "?" in raw:
        r.fail(
            key,
            f"{url!r}: give a database file (an in-memory or parameterised store is not durable)",
        )
    path = (r.base / raw).resolve()
    if not path.parent.is_dir():
        r.fail(key, f"directory {path.parent} does not exist")
    if path.exists() and not path.is_file():
        r.fail(key, f"{path} is not a file")
    return f"sqlite:///{path}", path


def _address(r: _Reader, table: Mapping[str, Any], name: str) -> tuple[str, int] | None:
    if name not in table:
        return None
    key = f"listen.{name}"
    value = r.string(table, "listen", name)
    host, port = r.wrap(key, lambda: split_host_port(value))
    if port > 65535:
        r.fail(key, f"port {port} is outside 0..65535")
    return host.strip("[]"), port


def _endpoint(r: _Reader, key: str, binding: PartnerBinding, value: str) -> str:
    if binding is PartnerBinding.GRPC:
        _, port = r.wrap(key, lambda: split_host_port(value))
        if "://" in value or not 0 < port <= 65535:
            r.fail(key, f"{value!r}: a grpc endpoint is host:port with a port in 1..65535")
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        r.fail(key, f"{value!r}: an xml endpoint is an https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        r.fail(key, f"{value!r}: the port is not a number in 0..65535")
    return value


def _issued_by_one_of(
    issued: x509.Certificate | x509.CertificateRevocationList, cas: Sequence[x509.Certificate]
) -> bool:
    """Signed by one of ``cas`` (matched by name, checked by signature, as the trust store does)."""
    if isinstance(issued, x509.CertificateRevocationList):
        return any(ca.subject == issued.issuer and crl_signed_by(issued, ca) for ca in cas)
    return any(issued_by(issued, ca) for ca in cas)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _partner(
    r: _Reader, index: int, value: Any, own: Administration, now: datetime
) -> tuple[PartnerConfig, PartnerTrust, bytes]:
    key = f"partners[{index}]"
    table = r.check_table(value, key, _PARTNER)
    admin: Administration = r.wrap(
        f"{key}.administration", lambda: administration(r.string(table, key, "administration"))
    )
    if admin is own:
        r.fail(f"{key}.administration", f"{admin.value} is this gateway's own administration")
    binding_text = r.string(table, key, "binding")
    try:
        binding = PartnerBinding(binding_text.lower())
    except ValueError:
        r.fail(f"{key}.binding", f"{binding_text!r} is not one of: grpc, xml")
    endpoint = _endpoint(r, f"{key}.endpoint", binding, r.string(table, key, "endpoint"))

    cas = r.files(table, key, "ca")
    if not cas:
        r.fail(f"{key}.ca", f"missing: the CA certificate file(s) of {admin.value}")
    anchors: list[x509.Certificate] = []
    for ca_key, _, pem in cas:
        anchors.extend(r.wrap(ca_key, partial(certificates_from_pem, pem, what="CA certificate")))
    issuing: list[x509.Certificate] = []
    inter_files = r.files(table, key, "intermediates")
    for inter_key, inter_path, pem in inter_files:
        for cert in r.wrap(inter_key, partial(certificates_from_pem, pem, what="CA certificate")):
            if not _issued_by_one_of(cert, anchors) or not _is_ca(cert):
                r.fail(inter_key, f"{inter_path} is not a CA certificate issued by {key}.ca")
            issuing.append(cert)
    require_crl = r.boolean(table, key, "require_crl", True)
    crl_files = r.files(table, key, "crl")
    if require_crl and not crl_files:
        r.fail(
            f"{key}.crl",
            f"missing: give the CRL file(s) of {admin.value}'s CA, or set require_crl = false "
            "(revocation then rests on the signers list alone)",
        )
    crls: list[x509.CertificateRevocationList] = []
    for crl_key, crl_path, data in crl_files:
        loaded = r.wrap(crl_key, partial(crls_from_bytes, data))
        for crl in loaded:
            if not _issued_by_one_of(crl, [*anchors, *issuing]):
                r.fail(crl_key, f"{crl_path} is not signed by any CA in {key}.ca or .intermediates")
            if problem := crl_form_problem(crl):
                r.fail(crl_key, f"{crl_path} {problem}")
            if crl.next_update_utc is not None and crl.next_update_utc < now:
                log.warning(
                    "%s: CRL %s is stale since %s: %s's messages will be refused until it is "
                    "replaced",
                    crl_key,
                    crl_path,
                    crl.next_update_utc.isoformat(),
                    admin.value,
                )
        crls.extend(loaded)

    signers: tuple[SignerConfig, ...] | None = None
    allowed: tuple[AllowedSigner, ...] | None = None
    if "signers" in table:
        listed = table["signers"]
        if not isinstance(listed, list) or not listed:
            r.fail(f"{key}.signers", "must be one or more [[partners.signers]] tables")
        signer_configs: list[SignerConfig] = []
        allowed_list: list[AllowedSigner] = []
        for s_index, s_value in enumerate(listed):
            s_key = f"{key}.signers[{s_index}]"
            s_table = r.check_table(s_value, s_key, _SIGNER)
            cert_path, cert_pem = r.file(s_table.get("cert"), f"{s_key}.cert")
            until = _until(r, f"{s_key}.until", s_table.get("until"))
            allowed_list.append(
                r.wrap(f"{s_key}.cert", partial(allowed_signer_from_pem, cert_pem, until))
            )
            signer_configs.append(SignerConfig(cert_path, until))
        signers = tuple(signer_configs)
        allowed = tuple(allowed_list)

    server_name = r.string(table, key, "tls_server_name", required=False) or None
    profile_path, profile = _profile(r, key, table, admin, binding)
    handling_path, handling = _handling(r, key, table, admin)
    trust = PartnerTrust(admin, tuple(anchors), tuple(crls), allowed, require_crl=require_crl)
    roots_pem = b"".join(a.public_bytes(serialization.Encoding.PEM) for a in anchors)
    partner = PartnerConfig(
        administration=admin,
        binding=binding,
        endpoint=endpoint,
        ca=tuple(path for _, path, _ in cas),
        crl=tuple(path for _, path, _ in crl_files),
        intermediates=tuple(path for _, path, _ in inter_files),
        signers=signers,
        require_crl=require_crl,
        tls_server_name=server_name,
        profile=profile,
        profile_path=profile_path,
        handling=handling,
        handling_path=handling_path,
    )
    return partner, trust, roots_pem


def _profile(
    r: _Reader,
    key: str,
    table: Mapping[str, Any],
    admin: Administration,
    binding: PartnerBinding,
) -> tuple[Path | None, PartnerProfile | None]:
    """The partner profile a [[partners]] table links to: it must be this partner's, and say
    the binding the deployment uses (the deployment keeps endpoint, CAs and CRLs)."""
    linked = _linked_file(r, key, table, "profile", load_profile)
    if linked is None:
        return None, None
    path, profile = linked
    if profile.administration is not admin:
        r.fail(
            f"{key}.profile",
            f"{path} is the profile of {profile.administration.value}, not {admin.value}",
        )
    if profile.transport.binding.value != binding.value:
        r.fail(
            f"{key}.binding",
            f"{binding.value!r} disagrees with transport.binding = "
            f"{profile.transport.binding.value!r} in the profile {path} ({key}.profile)",
        )
    return path, profile


_Loaded = TypeVar("_Loaded")


def _linked_file(
    r: _Reader,
    key: str,
    table: Mapping[str, Any],
    name: str,
    load: Callable[[str, str], _Loaded],
    source: Callable[[Path], str] = str,
) -> tuple[Path, _Loaded] | None:
    """A data file a [[partners]] table links to (profile, handling rules), loaded by its own
    strict loader; its errors keep their code and gain the config key that named the file."""
    if name not in table:
        return None
    path, data = r.file(table[name], f"{key}.{name}")
    try:
        return path, load(data.decode("utf-8"), source(path))
    except UnicodeDecodeError as exc:
        r.fail(f"{key}.{name}", f"{path} is not UTF-8: {exc}")
    except GatewayError as error:
        raise type(error)(
            f"config error: {key}.{name}: {error.message}",
            code=error.code,
            location=error.location,
        ) from None


def _handling(
    r: _Reader, key: str, table: Mapping[str, Any], admin: Administration
) -> tuple[Path | None, HandlingRules | None]:
    """The UB3 handling rules a [[partners]] table links to; they must be this partner's."""
    linked = _linked_file(r, key, table, "handling", load_handling_rules, source=lambda p: p.name)
    if linked is None:
        return None, None
    path, rules = linked
    if rules.administration is not admin:
        r.fail(
            f"{key}.handling",
            f"{path} holds the handling rules of {rules.administration.value}, not {admin.value}",
        )
    return path, rules


def _operations(r: _Reader, data: Mapping[str, Any]) -> tuple[MetricsConfig, LogFormat]:
    """`[metrics] listen = "127.0.0.1:9464"` and `[logging] format = "json"`, both optional."""
    table = r.check_table(data.get("metrics"), "metrics", _METRICS, required=False)
    listen: tuple[str, int] | None = None
    if "listen" in table:
        value = r.string(table, "metrics", "listen")
        host, port = r.wrap("metrics.listen", lambda: split_host_port(value))
        if port > 65535:
            r.fail("metrics.listen", f"port {port} is outside 0..65535")
        listen = (host.strip("[]"), port)
    logging_table = r.check_table(data.get("logging"), "logging", _LOGGING, required=False)
    text = r.string(logging_table, "logging", "format", required=False) or LogFormat.TEXT.value
    try:
        log_format = LogFormat(text.lower())
    except ValueError:
        r.fail("logging.format", f"{text!r} is not one of: text, json")
    return MetricsConfig(listen), log_format


# --- [ub2]: UB2 schema packs and mapping specs --------------------------------------------------
_UB2 = ("schema_packs", "mappings")
_UB2_PACKS = ("ics_ens", "wco_dm")
UB2_MAPPINGS = Path("adapters") / "mappings"


@dataclass(frozen=True)
class Ub2Config:
    """`[ub2]`: the official schema packs EU messages are validated against, and the mapping
    specs that translate them; both loaded and checked when the configuration is read, so a
    gateway with a broken pack does not start (UB2_SCHEMA_PACK_INVALID, file and reason)."""

    ics_ens: Path | None  # schema_packs.ics_ens: CC315A / CC313A v11.2
    wco_dm: Path | None  # schema_packs.wco_dm: WCO DM 3.6 DEC-DMS
    mappings: Path  # the directory of the UB2 mapping specs
    packs: SchemaPacks = field(repr=False, compare=False, kw_only=True)
    specs: Mapping[SourceMessage, MappingSpec] = field(repr=False, compare=False, kw_only=True)

    def pipeline(self) -> Ub2Pipeline:
        from gateway.translate.ub2_pipeline import Ub2Pipeline

        return Ub2Pipeline(self.packs, self.specs)


def default_ub2_mappings(config_dir: Path | None = None) -> Path:
    """adapters/mappings beside the configuration if there is one, else the source tree's."""
    source_tree = Path(__file__).resolve().parents[2] / UB2_MAPPINGS
    if config_dir is not None and (config_dir / UB2_MAPPINGS).is_dir():
        return config_dir / UB2_MAPPINGS
    return source_tree


def _ub2(r: _Reader, value: Any) -> Ub2Config | None:
    """Loads the packs (each checked on its own, so an error names its key) and the specs;
    their errors keep their UB2_* code and gain the config key."""
    if value is None:
        return None
    from gateway.translate.eu_messages import load_schema_packs
    from gateway.translate.ub2_translate import load_mapping_specs

    table = r.check_table(value, "ub2", _UB2)
    packs_table = r.check_table(
        table.get("schema_packs"), "ub2.schema_packs", _UB2_PACKS, required=False
    )
    dirs: dict[str, Path | None] = {}
    for name in _UB2_PACKS:
        text = r.string(packs_table, "ub2.schema_packs", name, required=False)
        dirs[name] = (r.base / text).resolve() if text else None
        if dirs[name] is None:
            continue
        key = f"ub2.schema_packs.{name}"
        pair = (dirs[name], None) if name == "ics_ens" else (None, dirs[name])
        checked = _ub2_wrap(key, partial(load_schema_packs, *pair))
        dirs[name] = checked.ics_ens if name == "ics_ens" else checked.wco_dm
    text = r.string(table, "ub2", "mappings", required=False)
    mappings = (r.base / text).resolve() if text else default_ub2_mappings(r.base)
    specs = _ub2_wrap("ub2.mappings", lambda: load_mapping_specs(mappings))
    return Ub2Config(
        dirs["ics_ens"],
        dirs["wco_dm"],
        mappings,
        packs=_ub2_wrap("ub2.schema_packs", lambda: load_schema_packs(*dirs.values())),
        specs=specs,
    )


def _ub2_wrap(key: str, action: Callable[[], _T]) -> _T:
    try:
        return action()
    except GatewayError as error:
        raise type(error)(
            f"config error: {key}: {error.message}", code=error.code, location=error.location
        ) from None


def _poll_seconds(r: _Reader, table: Mapping[str, Any]) -> float:
    value = table.get("poll_seconds", 1.0)
    if not isinstance(value, int | float) or isinstance(value, bool):
        r.fail("delivery.poll_seconds", f"must be a number of seconds, not {_kind(value)}")
    if not 0.01 <= value <= 3600:
        r.fail("delivery.poll_seconds", f"{value} is outside 0.01..3600")
    return float(value)


def _lease_seconds(r: _Reader, table: Mapping[str, Any]) -> float:
    value = table.get("lease_seconds", DeliveryConfig.lease_seconds)
    if not isinstance(value, int | float) or isinstance(value, bool):
        r.fail("delivery.lease_seconds", f"must be a number of seconds, not {_kind(value)}")
    if not 0.5 <= value <= 86_400:
        r.fail("delivery.lease_seconds", f"{value} is outside 0.5..86400")
    return float(value)


def _node_id(r: _Reader, gw: Mapping[str, Any]) -> str:
    """`[gateway] node_id`, or hostname:pid (unique among live nodes, not across restarts)."""
    if "node_id" not in gw:
        from gateway.store.outbox import default_node_id

        return default_node_id()
    value = r.string(gw, "gateway", "node_id")
    if not value.strip() or len(value) > 128 or not value.isprintable():
        r.fail("gateway.node_id", f"{value!r}: give 1 to 128 printable characters")
    return value


def _until(r: _Reader, key: str, value: Any) -> datetime | None:
    """A TOML offset date-time (until = 2027-01-01T00:00:00Z) or the same as a string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            r.fail(key, f"{value!r} is not an ISO 8601 date-time such as 2027-01-01T00:00:00Z")
    if not isinstance(value, datetime):
        r.fail(key, f"must be a date-time such as 2027-01-01T00:00:00Z, not {_kind(value)}")
    if value.tzinfo is None:
        r.fail(key, f"{value.isoformat()} has no time zone; write it in UTC with a Z")
    return value.astimezone(UTC)


# --- building --------------------------------------------------------------------------------
def build_node(config: GatewayConfig) -> GatewayNode:
    """The node a configuration describes: its identity, trust store, inbox and limits.

    The caller owns the node's inbox and closes it (node.inbox.close()) on shutdown.
    """
    from gateway.store.database import open_database

    try:
        inbox = SqliteInbox(database=open_database(config.store_url))
    except DeliveryError as error:
        raise ConfigError(
            f"config error: store.url: {error.message}", location=str(config.path)
        ) from None
    # UB1 list messages (deltas, full lists) are applied to the AEO tables in the inbox
    # transaction. Registered whatever the profiles: the side receiving a list (e.g. US from
    # EU) has no profile for the sender (profiles describe the EU's partners).
    from gateway.services.aeo import ub1_handlers
    from gateway.store.aeo_store import AeoStore

    aeo_store = AeoStore(inbox.database, config.administration)
    profiles = [(p.administration, p.profile) for p in config.partners if p.profile is not None]
    limits = replace(
        config.limits,
        clock_skew_by_sender={a: prof.clock_skew for a, prof in profiles},
        max_age_by_sender={a: prof.duplicate_window for a, prof in profiles},
    )
    # UB3 records are stored with their label (kept for the sender's handling-rules retention);
    # feedback must answer a record this gateway sent.
    from gateway.services.risk import ub3_handlers
    from gateway.store.risk_store import RiskStore

    handlers: dict[Any, Any] = dict(
        ub1_handlers(aeo_store, max_payload_bytes=config.limits.max_envelope_bytes)
    )
    handlers.update(ub3_handlers(RiskStore(inbox.database, config.administration), config))
    # UB2 transactions are stored as received; a control result must concern a transaction
    # this gateway sent that partner (kept with it); a linked profile must agree the message.
    from gateway.services.transactions import ub2_handlers
    from gateway.store.transaction_store import TransactionStore

    handlers.update(ub2_handlers(TransactionStore(inbox.database, config.administration), config))
    return GatewayNode(
        config.signing_identity,
        config.trust,
        inbox,
        limits=limits,
        message_log=SqliteMessageLog(inbox.database, signer=config.signing_identity),
        handlers=handlers,
    )
