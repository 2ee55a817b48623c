"""The UB2 translation pipeline: EU message bytes in, a checked consignment record out. Sans-I/O.

One place runs the three steps every UB2 user goes through (``gncgw translate``, ``gncgw
validate``, ``gncgw send --to CN IN.xml``, the demo), in this order:

1. ``read_eu_message``: hardened parse, unwrap (SOAP 1.2, DEC-DMS MetaData, HMRC request),
   detect the source message, libxml2 validation against the configured schema pack;
2. ``to_consignment`` with the spec of that source message (adapters/mappings/*.toml);
3. ``consignment_findings``: every coded value checked against its code list, each finding
   located by the XPath of the value in the message as received.

Findings are returned, not raised: translating is not sending, and an operator wants to see
every bad value at once. Sending refuses on the first (services.transactions). The pipeline
holds the packs and specs loaded at start-up (config ``[ub2]``) and reads no file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.errors import UB2_MAPPING_INVALID, UB2_SCHEMA_INVALID, TransactionError
from gateway.model.codelists import consignment_findings
from gateway.model.consignment import Consignment, SourceMessage
from gateway.translate.eu_messages import EuMessage, SchemaFinding, SchemaPacks, read_eu_message
from gateway.translate.ub2_translate import MappingSpec, to_consignment

__all__ = ["Translation", "Ub2Pipeline", "ValidationReport"]


@dataclass(frozen=True)
class Translation:
    """One EU message translated: what it was, the record, and its code-list findings."""

    message: EuMessage
    consignment: Consignment
    findings: tuple[TransactionError, ...]
    validated: bool = True  # False when read with validate=False (not schema-checked)

    @property
    def clean(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class ValidationReport:
    """``gncgw validate``: every schema error (with path), then the code-list findings.

    ``translation`` is None when the message is not schema-valid (a record is only built from
    a valid message) or when it is valid but its translation was refused (``refusal``)."""

    message: EuMessage
    schema_errors: tuple[SchemaFinding, ...]
    translation: Translation | None = None
    refusal: TransactionError | None = None

    @property
    def findings(self) -> tuple[TransactionError, ...]:
        return self.translation.findings if self.translation is not None else ()

    @property
    def ok(self) -> bool:
        return not self.schema_errors and self.refusal is None and not self.findings


class Ub2Pipeline:
    """Schema packs and mapping specs, loaded once; ``translate`` per message."""

    def __init__(
        self, packs: SchemaPacks | None, specs: Mapping[SourceMessage, MappingSpec]
    ) -> None:
        self.packs = packs
        self.specs: Mapping[SourceMessage, MappingSpec] = MappingProxyType(dict(specs))

    def spec(self, source: SourceMessage, location: str = "") -> MappingSpec:
        found = self.specs.get(source)
        if found is None:
            known = ", ".join(sorted(s.value for s in self.specs)) or "none"
            raise TransactionError(
                f"no mapping spec for {source.value} is loaded (specs: {known})",
                code=UB2_MAPPING_INVALID,
                location=location or None,
            )
        return found

    def read(self, data: bytes, *, validate: bool = True) -> EuMessage:
        """Parse, unwrap, detect and (unless ``validate=False``) schema-validate."""
        return read_eu_message(data, self.packs, validate=validate)

    def translate(self, data: bytes, *, validate: bool = True) -> Translation:
        """read_eu_message -> to_consignment -> consignment_findings.

        Raises TransactionError for what stops a translation (not XML, unknown message, wrong
        namespace, schema-invalid, no pack, a value that does not convert); code-list findings
        are returned in ``Translation.findings``.
        """
        message = self.read(data, validate=validate)
        return self.translate_message(message, validated=validate)

    def translate_message(self, message: EuMessage, *, validated: bool = True) -> Translation:
        consignment = to_consignment(message, self.spec(message.source, message.base_path))
        return Translation(
            message, consignment, tuple(consignment_findings(consignment)), validated
        )

    def check(self, data: bytes) -> ValidationReport:
        """Full check for a report: every schema error, or else the code-list findings.

        libxml2 decides validity (as on the hot path); when it refuses, ``SchemaPacks.diagnose``
        lists every error with its path (and if the slower validator happens to find nothing,
        libxml2's own first error is reported, so an invalid message never reads as valid).
        """
        message = self.read(data, validate=False)
        try:
            if self.packs is None:
                message = self.read(data, validate=True)  # raises UB2_SCHEMA_PACK_MISSING
            else:
                self.packs.validate(message)
        except TransactionError as error:
            if error.code != UB2_SCHEMA_INVALID or self.packs is None:
                raise
            errors = tuple(self.packs.diagnose(message)) or (
                SchemaFinding(path=error.location or message.base_path, reason=error.message),
            )
            return ValidationReport(message, errors)
        try:
            translation = self.translate_message(message)
        except TransactionError as refusal:
            return ValidationReport(message, (), refusal=refusal)
        return ValidationReport(message, (), translation)
