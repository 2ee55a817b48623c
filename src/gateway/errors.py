"""The error hierarchy and the registry of stable error codes.

Every error the gateway reports carries a stable code (listed in docs/errors.md, which a test
keeps in step with this registry), a message saying what is wrong, and where known the location
(an XPath, a field name, a file:line). Partners see the codes in rejection receipts, so a code,
once published, never changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    summary: str


_REGISTRY: dict[str, ErrorCode] = {}


def _code(code: str, summary: str) -> str:
    if code in _REGISTRY:
        raise RuntimeError(f"error code {code} registered twice")
    _REGISTRY[code] = ErrorCode(code, summary)
    return code


def registry() -> dict[str, ErrorCode]:
    """All codes, for docs/errors.md and for partners' integration engineers."""
    return dict(_REGISTRY)


class GatewayError(Exception):
    """Base of every error the gateway reports with a stable code."""

    code: str = _code("GNC_INTERNAL", "Unexpected internal failure; nothing was accepted.")

    def __init__(self, message: str, *, code: str | None = None, location: str | None = None):
        super().__init__(message)
        if code is not None:
            if code not in _REGISTRY:
                raise RuntimeError(f"unregistered error code {code}")
            self.code = code
        self.message = message
        self.location = location

    def __str__(self) -> str:
        where = f" (at {self.location})" if self.location else ""
        return f"{self.code}: {self.message}{where}"


# --- header and envelope structure -------------------------------------------------------------
class EnvelopeError(GatewayError):
    """The envelope or its header is malformed."""

    code = _code("ENV_MALFORMED", "The envelope cannot be decoded or lacks a required part.")


HEADER_INVALID = _code("ENV_HEADER_INVALID", "A header field is missing or breaks its format rule.")
UNKNOWN_ADMINISTRATION = _code(
    "ENV_UNKNOWN_ADMINISTRATION", "Sender or receiver is not a known administration code."
)
PAYLOAD_DIGEST_MISMATCH = _code(
    "ENV_PAYLOAD_DIGEST_MISMATCH", "The payload does not match the SHA-256 in the signed header."
)
WRONG_RECEIVER = _code(
    "ENV_WRONG_RECEIVER", "The envelope is addressed to another administration than this gateway."
)
CLOCK_SKEW = _code(
    "ENV_CLOCK_SKEW", "The created-at time is outside the tolerance of the partner profile."
)
OVERSIZE = _code("ENV_OVERSIZE", "The message exceeds the configured size limit.")


# --- signatures --------------------------------------------------------------------------------
class SignatureError(GatewayError):
    """The signature is missing, malformed, outside the profile, or does not verify."""

    code = _code("SIG_INVALID", "The signature value does not verify over the signed content.")


SIG_MISSING = _code("SIG_MISSING", "The envelope carries no signature.")
SIG_MULTIPLE = _code("SIG_MULTIPLE", "More than one signature: only one is allowed.")
SIG_MALFORMED = _code("SIG_MALFORMED", "The signature structure cannot be decoded.")
SIG_ALGORITHM = _code(
    "SIG_ALGORITHM_NOT_ALLOWED",
    "An algorithm outside the profile (allowed: ES256/PS256, ecdsa-sha256/rsa-sha256, SHA-256).",
)
SIG_REFERENCE = _code(
    "SIG_REFERENCE_NOT_ROOT",
    'The XML signature must have exactly one Reference, with URI="" (the envelope root).',
)
SIG_TRANSFORM = _code(
    "SIG_TRANSFORM_NOT_ALLOWED",
    "Transforms must be exactly enveloped-signature then exclusive C14N.",
)
SIG_PLACEMENT = _code(
    "SIG_PLACEMENT", "The XML signature must be the last child of the envelope root."
)
SIG_DIGEST = _code("SIG_DIGEST_MISMATCH", "The signed content was altered after signing.")
SIG_KEY_MISMATCH = _code(
    "SIG_KEY_MISMATCH", "The signature algorithm does not fit the certificate's key type."
)


# --- trust -------------------------------------------------------------------------------------
class TrustError(GatewayError):
    """The signer's certificate is not one the sender administration may sign with."""

    code = _code(
        "TRUST_UNTRUSTED", "The certificate does not chain to any configured trust anchor."
    )


TRUST_WRONG_PARTNER = _code(
    "TRUST_WRONG_PARTNER",
    "The certificate belongs to another administration than the sender header names.",
)
TRUST_EXPIRED = _code(
    "TRUST_EXPIRED", "The certificate, or one in its chain, is expired or not yet valid."
)
TRUST_REVOKED = _code("TRUST_REVOKED", "The certificate is revoked by its CA's CRL.")
TRUST_NOT_ALLOWED = _code(
    "TRUST_CERT_NOT_ALLOWED",
    "The certificate chains to the partner CA but is not in the partner's allowed signing set "
    "(or its rotation window has closed).",
)
TRUST_KEY_USAGE = _code(
    "TRUST_KEY_USAGE",
    "The certificate may not sign envelopes: no digitalSignature key usage, a CA certificate, "
    "or a TLS-only certificate.",
)
TRUST_CRL = _code("TRUST_CRL_INVALID", "A CRL is missing, stale, or not signed by its CA.")
TRUST_UNKNOWN_PARTNER = _code(
    "TRUST_UNKNOWN_PARTNER", "No trust is configured for this administration."
)


# --- XML intake --------------------------------------------------------------------------------
class XmlIntakeError(GatewayError):
    """The XML document is unsafe or not well-formed."""

    code = _code("XML_NOT_WELL_FORMED", "The document is not well-formed XML.")


XML_DTD = _code("XML_DTD_FORBIDDEN", "DOCTYPE declarations (and so entities) are not accepted.")
XML_ENTITY = _code("XML_ENTITY_FORBIDDEN", "Entity references are not accepted.")
XML_TOO_LARGE = _code("XML_TOO_LARGE", "The document exceeds the size limit.")
XML_TOO_DEEP = _code("XML_TOO_DEEP", "The document nests deeper than the depth limit.")
XML_TOO_MANY = _code("XML_TOO_MANY_ELEMENTS", "The document has more elements than the limit.")
XML_SCHEMA = _code("XML_SCHEMA_INVALID", "The document is not valid against its schema.")
XML_PROCESSING = _code(
    "XML_PROCESSING_INSTRUCTION", "Processing instructions are not accepted in envelopes."
)


# --- delivery ----------------------------------------------------------------------------------
class DeliveryError(GatewayError):
    """Store and delivery failures."""

    code = _code(
        "DLV_STORE_UNAVAILABLE", "The message store is unavailable; nothing was receipted."
    )


DUPLICATE_CONFLICT = _code(
    "DLV_DUPLICATE_CONFLICT",
    "The message id was already received with a different payload digest, or from another "
    "administration.",
)
RECEIPT_MISMATCH = _code(
    "DLV_RECEIPT_MISMATCH", "The receipt does not name the message or digest that was sent."
)


# --- configuration and transport ---------------------------------------------------------------
class ConfigError(GatewayError):
    """The configuration or a key/certificate file is wrong."""

    code = _code("CFG_INVALID", "The configuration is invalid.")


class TransportError(GatewayError):
    """The partner could not be reached or answered outside the protocol."""

    code = _code("TRN_UNAVAILABLE", "The partner endpoint could not be reached.")


TRN_PROTOCOL = _code("TRN_PROTOCOL", "The partner answered something that is not a receipt.")
TRN_BUSY = _code(
    "TRN_BUSY",
    "The gateway already serves as many gRPC streams as it allows, for this partner or in all, "
    "or closed a stream that sent nothing for too long; send again later (nothing of it was "
    "read).",
)
TRN_BAD_REQUEST = _code(
    "TRN_BAD_REQUEST",
    "The HTTP request breaks the XML transport profile (path, method, Content-Type, "
    "Content-Length; chunked bodies are not accepted).",
)


# --- UB1 AEO -----------------------------------------------------------------------------------
class AeoError(GatewayError):
    """An AEO record, list, change or exchange breaks a UB1 rule; nothing of it was accepted."""

    code = _code("AEO_RECORD_INVALID", "An AEO record field is missing or breaks its format rule.")


AEO_EORI_INVALID = _code(
    "AEO_EORI_INVALID",
    "The EORI breaks its rule: an EU member state code (or XI) then 1 to 15 letters or digits.",
)
AEO_EORI_NOT_VALID = _code(
    "AEO_EORI_NOT_VALID",
    "The EORI is reported as not valid, so it cannot hold a granted AEO status.",
)
AEO_UNKNOWN_TYPE = _code("AEO_UNKNOWN_TYPE", "The AEO type is not AEOC, AEOS or AEOF.")
AEO_AUTHORISATION_NUMBER_INVALID = _code(
    "AEO_AUTHORISATION_NUMBER_INVALID",
    "The authorisation number breaks the EU form (country, 'AEO', C/S/F, digits) or does not "
    "match the authorisation type or issuing country.",
)
AEO_UNKNOWN_STATUS = _code(
    "AEO_UNKNOWN_STATUS", "The status is not GRANTED, SUSPENDED, REVOKED or CONSENT_WITHDRAWN."
)
AEO_UNKNOWN_AUTHORISATION = _code(
    "AEO_UNKNOWN_AUTHORISATION", "A status change names an authorisation the list does not hold."
)
AEO_ILLEGAL_TRANSITION = _code(
    "AEO_ILLEGAL_TRANSITION", "The status change is not a legal transition (e.g. out of REVOKED)."
)
AEO_OUT_OF_ORDER = _code(
    "AEO_OUT_OF_ORDER",
    "The change is older than what is held: its version or effective date goes backwards.",
)
AEO_PREVIOUS_STATUS_MISMATCH = _code(
    "AEO_PREVIOUS_STATUS_MISMATCH",
    "The change says the status was X but the list holds Y: a change was lost; resynchronise.",
)
AEO_DUPLICATE_AUTHORISATION = _code(
    "AEO_DUPLICATE_AUTHORISATION", "The same authorisation appears twice in one full list."
)
AEO_NO_CONSENT = _code(
    "AEO_NO_CONSENT", "The operator has not consented to the exchange: the record is never sent."
)
AEO_TYPE_NOT_ELIGIBLE = _code(
    "AEO_TYPE_NOT_ELIGIBLE", "The partner's agreement does not recognise this AEO type."
)
AEO_IDENTIFIER_MISSING = _code(
    "AEO_IDENTIFIER_MISSING",
    "The partner needs an identifier the record lacks (e.g. US MID numbers).",
)
AEO_UNKNOWN_PROGRAMME = _code(
    "AEO_UNKNOWN_PROGRAMME", "A partner programme code has no EU equivalent in the profile."
)
AEO_SUMMARY_MISMATCH = _code(
    "AEO_SUMMARY_MISMATCH",
    "The reconciliation summary (count and digest per status) does not match the records.",
)
AEO_PAYLOAD_MALFORMED = _code(
    "AEO_PAYLOAD_MALFORMED", "A UB1 payload cannot be decoded or lacks a required part."
)
AEO_IMPORT_REJECTED = _code(
    "AEO_IMPORT_REJECTED",
    "An EU AEO export has bad records; the whole file is refused and every bad record is listed.",
)
AEO_DATE_IN_FUTURE = _code(
    "AEO_DATE_IN_FUTURE",
    "An AEO date (authorised since, status effective) is after today: a record is imported when "
    "it takes effect (a mistyped year would otherwise answer queries wrongly and lock the "
    "authorisation's later changes).",
)
AEO_MAPPING_SPEC_INVALID = _code(
    "AEO_MAPPING_SPEC_INVALID", "A mapping spec in adapters/mappings is malformed."
)


# --- partner profiles --------------------------------------------------------------------------
class ProfileError(ConfigError):
    """A partner profile in adapters/partners breaks its rules; the gateway does not start."""

    code = _code("PRF_INVALID", "A partner profile value breaks its rule.")


PRF_UNKNOWN_KEY = _code("PRF_UNKNOWN_KEY", "A partner profile has a key the gateway does not know.")
PRF_MISSING_KEY = _code("PRF_MISSING_KEY", "A partner profile lacks a required key.")
PRF_WRONG_TYPE = _code("PRF_WRONG_TYPE", "A partner profile value has the wrong TOML type.")
PRF_UNKNOWN_ADMINISTRATION = _code(
    "PRF_UNKNOWN_ADMINISTRATION", "A partner profile names an unknown administration code."
)
PRF_UNKNOWN_AEO_TYPE = _code(
    "PRF_UNKNOWN_AEO_TYPE", "A partner profile names an AEO type other than AEOC, AEOS, AEOF."
)
PRF_BAD_BINDING = _code("PRF_BAD_BINDING", "A partner profile binding is not 'grpc' or 'xml'.")
PRF_BAD_RETRY = _code(
    "PRF_BAD_RETRY",
    "Retry or timing rules are negative, zero where they must be positive, or inconsistent.",
)
PRF_NOT_TOML = _code("PRF_NOT_TOML", "A partner profile is not valid TOML.")


# --- UB1 AEO: full lists in parts and online queries --------------------------------------------
AEO_FULL_LIST_SEQUENCE = _code(
    "AEO_FULL_LIST_SEQUENCE",
    "A full list in parts is out of sequence: a part repeated or after the end, or the end "
    "before all its parts; the list held is kept.",
)
AEO_NO_AGREEMENT = _code(
    "AEO_NO_AGREEMENT",
    "No UB1 agreement (partner profile) is configured for this partner: nothing is sent or "
    "answered.",
)
AEO_QUERY_REFUSED = _code(
    "AEO_QUERY_REFUSED",
    "The partner refused an online AEO query with a code this gateway does not know.",
)
AEO_ANSWER_MISMATCH = _code(
    "AEO_ANSWER_MISMATCH",
    "An answer to an online AEO query does not answer that query (correlation id, query id, "
    "identifier, sender or receiver differ).",
)


# --- outbox (reliable delivery) ----------------------------------------------------------------
DLV_OUTBOX_UNKNOWN = _code(
    "DLV_OUTBOX_UNKNOWN_MESSAGE", "The outbox holds no message with this id."
)
DLV_OUTBOX_STATE = _code(
    "DLV_OUTBOX_STATE",
    "The outbox message is not in the state the operation needs (only a dead letter can be "
    "replayed or discarded; only a pending message can fail an attempt).",
)


# --- UB3 risk information ------------------------------------------------------------------------
class RiskError(GatewayError):
    """A UB3 record, form, exchange or handling rule check failed; nothing of it was sent."""

    code = _code(
        "RISK_RECORD_INVALID", "A risk information record field is missing or breaks its rule."
    )


RISK_UNKNOWN_AREA = _code(
    "RISK_UNKNOWN_AREA", "The risk area is not in the UB3 code list of common risk areas."
)
RISK_COMMODITY_CODE_INVALID = _code(
    "RISK_COMMODITY_CODE_INVALID",
    "A commodity code is not an HS code of 6, 8 or 10 digits with a valid chapter.",
)
RISK_COUNTRY_INVALID = _code(
    "RISK_COUNTRY_INVALID", "A country is not an ISO 3166-1 alpha-2 code, or a route is malformed."
)
RISK_TRANSPORT_MODE_INVALID = _code(
    "RISK_TRANSPORT_MODE_INVALID", "A transport mode is not a UN/ECE Recommendation 19 code (0-9)."
)
RISK_CONTAINER_ID_INVALID = _code(
    "RISK_CONTAINER_ID_INVALID",
    "A container id is not an ISO 6346 number (owner code, category U/J/Z, serial, check digit).",
)
RISK_VALIDITY_EXPIRED = _code(
    "RISK_VALIDITY_EXPIRED", "The record's validity period has ended: it is neither sent nor kept."
)
RISK_NO_AGREEMENT = _code(
    "RISK_NO_AGREEMENT",
    "No UB3 handling rules are configured for this partner: nothing is sent to it.",
)
RISK_MESSAGE_NOT_AGREED = _code(
    "RISK_MESSAGE_NOT_AGREED", "The handling rules do not allow this UB3 message to this partner."
)
RISK_AREA_NOT_CLEARED = _code(
    "RISK_AREA_NOT_CLEARED", "The partner is not cleared to receive this risk area."
)
RISK_LABEL_ABOVE_CLEARANCE = _code(
    "RISK_LABEL_ABOVE_CLEARANCE",
    "The handling label is above the highest label the partner is cleared for.",
)
RISK_PERSONAL_DATA_FORBIDDEN = _code(
    "RISK_PERSONAL_DATA_FORBIDDEN",
    "The record holds personal data of natural persons and the agreement forbids sending it.",
)
RISK_NOT_ORIGINATOR = _code(
    "RISK_NOT_ORIGINATOR",
    "Only the originating administration sends its risk information (no onward sharing).",
)
RISK_UNKNOWN_REFERENCE = _code(
    "RISK_UNKNOWN_REFERENCE",
    "Feedback or a read names a risk information reference this gateway does not hold.",
)
RISK_PAYLOAD_MALFORMED = _code(
    "RISK_PAYLOAD_MALFORMED", "A UB3 payload cannot be decoded or lacks a required part."
)
RISK_FORM_INVALID = _code(
    "RISK_FORM_INVALID", "A CRMS risk form is not valid against its schema or the model."
)


class HandlingRulesError(ConfigError):
    """A UB3 handling rules file (adapters/handling) is invalid; the gateway does not start."""

    code = _code("HDL_INVALID", "A UB3 handling rules value breaks its rule.")


HDL_UNKNOWN_KEY = _code(
    "HDL_UNKNOWN_KEY", "A handling rules file has a key the gateway does not know."
)
HDL_MISSING_KEY = _code("HDL_MISSING_KEY", "A handling rules file lacks a required key.")
HDL_WRONG_TYPE = _code("HDL_WRONG_TYPE", "A handling rules value has the wrong TOML type.")
HDL_UNKNOWN_CODE = _code(
    "HDL_UNKNOWN_CODE",
    "A handling rules file names an unknown administration, risk area, label, message or field.",
)
HDL_NOT_TOML = _code("HDL_NOT_TOML", "A handling rules file is not valid TOML.")


# --- conformance suites (runner, reports, promotion) -------------------------------------------
class ConformanceError(GatewayError):
    """A conformance suite, run or promotion is refused before or instead of running."""

    code = _code(
        "CNF_SUITE_INVALID",
        "A conformance suite file does not parse or breaks a rule (unknown exchange, binding, "
        "outcome, generator or key); nothing ran.",
    )


CNF_SUITE_INVALID = ConformanceError.code
CNF_VERSION_MISMATCH = _code(
    "CNF_VERSION_MISMATCH",
    "A conformance suite's version is not the agreement version of the partner profile it tests.",
)
CNF_TARGET_INVALID = _code(
    "CNF_TARGET_INVALID",
    "A conformance target is not grpc://HOST:PORT or an https:// URL, or the tester's identity "
    "and trust are missing.",
)
CNF_PROMOTION_REFUSED = _code(
    "CNF_PROMOTION_REFUSED",
    "A staging link was not promoted: no recorded run of its suite passed at the profile's "
    "version (the message names the failing cases).",
)


# --- tamper-evident message log ----------------------------------------------------------------
DLV_LOG_TAMPERED = _code(
    "DLV_LOG_TAMPERED",
    "The message log's hash chain or a signed checkpoint does not match its entries: an entry "
    "was altered, removed or inserted (the message names the first one).",
)
DLV_LOG_SIGNATURE = _code(
    "DLV_LOG_SIGNATURE",
    "A message-log checkpoint or archive signature does not verify, or its signer is not trusted "
    "for the administration it names.",
)


# --- UB2 transaction data and control results --------------------------------------------------
class TransactionError(GatewayError):
    """An EU message, a UB2 record or a control result was refused; nothing of it was sent."""

    code = _code(
        "UB2_VALUE_INVALID",
        "A value of a UB2 record breaks its format rule (number, date, length); the location "
        "names the source element.",
    )


UB2_VALUE_INVALID = TransactionError.code
UB2_NOT_XML = _code("UB2_NOT_XML", "The EU message is not well-formed XML, or breaks the limits.")
UB2_UNKNOWN_MESSAGE = _code(
    "UB2_UNKNOWN_MESSAGE",
    "The document is not a message the gateway translates (CC315A, CC313A, DEC-DMS declaration).",
)
UB2_WRONG_NAMESPACE = _code(
    "UB2_WRONG_NAMESPACE",
    "The message's root element has a known name in a namespace other than the one its schema "
    "declares.",
)
UB2_SOAP_INVALID = _code(
    "UB2_SOAP_INVALID",
    "A SOAP 1.2 envelope around the message is malformed (no Body, several messages, a Fault).",
)
UB2_SCHEMA_INVALID = _code(
    "UB2_SCHEMA_INVALID",
    "The EU message is not valid against its official schema (the location names the element).",
)
UB2_SCHEMA_PACK_INVALID = _code(
    "UB2_SCHEMA_PACK_INVALID",
    "A configured schema pack directory is missing a schema the gateway needs, or a schema "
    "does not compile; the gateway does not start.",
)
UB2_SCHEMA_PACK_MISSING = _code(
    "UB2_SCHEMA_PACK_MISSING",
    "No schema pack is configured for this kind of EU message (ics-ens for CC315A/CC313A, "
    "wco-dm for DEC-DMS), so it is refused rather than taken unvalidated.",
)
UB2_MAPPING_INVALID = _code(
    "UB2_MAPPING_INVALID",
    "A UB2 mapping spec (adapters/mappings) breaks a rule (unknown key, target or WCO ID).",
)
UB2_COUNTRY_INVALID = _code(
    "UB2_COUNTRY_INVALID", "A country code is not an ISO 3166-1 alpha-2 code that exists."
)
UB2_CONTAINER_INVALID = _code(
    "UB2_CONTAINER_INVALID",
    "A container number is not an ISO 6346 number, or its check digit is wrong.",
)
UB2_COMMODITY_INVALID = _code(
    "UB2_COMMODITY_INVALID",
    "A commodity code is not an HS/CN/TARIC code (4 to 10 digits, existing HS chapter).",
)
UB2_PACKAGE_KIND_INVALID = _code(
    "UB2_PACKAGE_KIND_INVALID",
    "A package kind is not a UN/ECE Recommendation 21 package type code.",
)
UB2_TRANSPORT_MODE_INVALID = _code(
    "UB2_TRANSPORT_MODE_INVALID",
    "A transport mode is not a UN/ECE Recommendation 19 code (0-9).",
)
UB2_LOCATION_INVALID = _code(
    "UB2_LOCATION_INVALID",
    "A location code is not a UN/LOCODE (country + 3 characters) or a customs office reference "
    "number (country + 6 characters).",
)
UB2_NO_LANE = _code(
    "UB2_NO_LANE",
    "The consignment is on no agreed lane (port pair and participating operator) of the "
    "partner: nothing is sent.",
)
UB2_NOT_AGREED = _code(
    "UB2_NOT_AGREED",
    "The partner's profile has no UB2 agreement for this message: nothing is sent.",
)
UB2_PAYLOAD_MALFORMED = _code(
    "UB2_PAYLOAD_MALFORMED",
    "A UB2 exchange payload cannot be decoded, is not valid against the UB2 schema, or lacks a "
    "required part.",
)
UB2_OUTPUT_INVALID = _code(
    "UB2_OUTPUT_INVALID",
    "The UB2 XML a translation would write is not valid against ub2-transaction.xsd (a source "
    "value the code-list findings name breaks its format): nothing is written.",
)
UB2_CONTROL_RESULT_INVALID = _code(
    "UB2_CONTROL_RESULT_INVALID",
    "A control result breaks a rule (unknown control type or result, seal or discrepancy "
    "malformed).",
)
UB2_UNKNOWN_TRANSACTION = _code(
    "UB2_UNKNOWN_TRANSACTION",
    "A control result names a transaction this gateway has not exchanged with that partner.",
)
