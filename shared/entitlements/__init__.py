"""The agreement-entitlement model: plain data, the pure `decide()`, vocabularies."""

from shared.entitlements.decide import Decision, Reason, decide
from shared.entitlements.model import (
    Agreement,
    AgreementKind,
    AgreementStatus,
    CoverageLine,
    DataTerms,
    Identification,
    InstitutionKind,
    Party,
    PartyRole,
    QuotaPeriod,
    ServiceKind,
    Urgency,
    UsageEntry,
    UsageState,
)

__all__ = [
    "Agreement",
    "AgreementKind",
    "AgreementStatus",
    "CoverageLine",
    "DataTerms",
    "Decision",
    "Identification",
    "InstitutionKind",
    "Party",
    "PartyRole",
    "QuotaPeriod",
    "Reason",
    "ServiceKind",
    "Urgency",
    "UsageEntry",
    "UsageState",
    "decide",
]
