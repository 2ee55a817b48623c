"""Code lists shared by every exchange: administrations, Utility Blocks, handling labels."""

from __future__ import annotations

from enum import StrEnum


class Administration(StrEnum):
    """Customs administrations the gateway knows, by the code used in envelope headers."""

    EU = "EU"
    US = "US"
    CN = "CN"
    JP = "JP"
    CH = "CH"
    NO = "NO"
    AD = "AD"
    CA = "CA"
    MD = "MD"
    UA = "UA"
    HK = "HK"


class UtilityBlock(StrEnum):
    UB1 = "UB1"  # AEO mutual recognition
    UB2 = "UB2"  # transaction data and control results
    UB3 = "UB3"  # risk information


class HandlingLabel(StrEnum):
    """Handling labels, in increasing order of sensitivity (a partner is cleared up to one)."""

    PUBLIC = "PUBLIC"
    LIMITED = "LIMITED"
    RESTRICTED = "RESTRICTED"
    CONFIDENTIAL = "CONFIDENTIAL"

    @property
    def rank(self) -> int:
        return _LABEL_ORDER.index(self)


_LABEL_ORDER = list(HandlingLabel)
