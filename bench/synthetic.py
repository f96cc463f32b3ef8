"""A deterministic synthetic registry for the routing benchmark.

One seeded `random.Random` builds everything, so two runs route the same
referrals over the same agreements: about 300 institutions in twelve countries
and time zones, 1,000 agreements (every kind and status, open-ended and dated,
some renewals that supersede their predecessor), exactly 10,000 coverage lines
(services, specialty sets from `shared.entitlements.vocab`, named requesters
and providers on consortium agreements, quotas per month, quarter, year or
term, a few withdrawn), the usage ledger, the staff whose languages routing
matches, and a history of referrals and offers for open queues and response
times. The same records are turned into `shared.entitlements` data for the
in-memory paths and into ORM rows for the database paths.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from services.referral.workflow import OPEN_AT_PROVIDER, Status
from shared.entitlements import model as m
from shared.entitlements import vocab

SEED = 20261122
AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
"""Every decision is taken at this instant, so results do not depend on the day of the run."""
HISTORY_WINDOW = timedelta(days=180)
"""The look-back of `median_response_hours` in `services.referral.referrals.service.rank()`."""

AGREEMENTS = 1_000
RENEWALS = 120
COVERAGE_LINES = 10_000
USAGE_TARGET = 20_000
HISTORY_REFERRALS = 2_500

# country, time zone, cities, institutions, languages spoken by its staff
COUNTRIES: tuple[tuple[str, str, tuple[str, ...], int, tuple[str, ...]], ...] = (
    ("DZ", "Africa/Algiers", ("ALGER", "ORAN", "CONSTANTINE", "SETIF", "ANNABA"), 70, ("ar", "fr")),
    ("FR", "Europe/Paris", ("PARIS", "LYON", "MARSEILLE", "LILLE", "TOULOUSE"), 45, ("fr", "en")),
    ("TN", "Africa/Tunis", ("TUNIS", "SFAX", "SOUSSE"), 30, ("ar", "fr")),
    ("MA", "Africa/Casablanca", ("RABAT", "CASABLANCA", "FES"), 30, ("ar", "fr")),
    ("EG", "Africa/Cairo", ("CAIRO", "ALEXANDRIA"), 25, ("ar", "en")),
    ("KW", "Asia/Kuwait", ("KUWAIT",), 12, ("ar", "en")),
    ("SA", "Asia/Riyadh", ("RIYADH", "JEDDAH"), 20, ("ar", "en")),
    ("LB", "Asia/Beirut", ("BEIRUT",), 15, ("ar", "fr", "en")),
    ("BE", "Europe/Brussels", ("BRUXELLES", "LIEGE"), 15, ("fr", "en")),
    ("CA", "America/Toronto", ("MONTREAL", "TORONTO"), 13, ("en", "fr")),
    ("SN", "Africa/Dakar", ("DAKAR",), 15, ("fr",)),
    ("JO", "Asia/Amman", ("AMMAN",), 10, ("ar", "en")),
)
LANGUAGES = ("ar", "fr", "en")
PROVIDING_KINDS = frozenset(
    {
        m.InstitutionKind.UNIVERSITY_HOSPITAL,
        m.InstitutionKind.CANCER_CENTRE,
        m.InstitutionKind.SPECIALIST_CENTRE,
    }
)
SERVICE_WEIGHTS = {
    m.ServiceKind.SECOND_OPINION: 30,
    m.ServiceKind.TELECONSULTATION: 25,
    m.ServiceKind.IMAGING_REVIEW: 20,
    m.ServiceKind.PATIENT_TRANSFER: 10,
    m.ServiceKind.VISITING_MISSION: 8,
    m.ServiceKind.TRAINING: 7,
}


@dataclass(frozen=True, slots=True)
class Institution:
    id: int
    code: str
    country: str
    city: str
    kind: m.InstitutionKind
    timezone: str


@dataclass(frozen=True, slots=True)
class AgreementRecord:
    """An agreement as stored: the domain view (active lines only) plus what only the row has."""

    domain: m.Agreement
    kind: m.AgreementKind
    withdrawn: tuple[m.CoverageLine, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageRecord:
    id: int
    line_id: int
    agreement_id: int
    requester_id: int
    provider_id: int
    service: m.ServiceKind
    state: m.UsageState
    at: datetime


@dataclass(frozen=True, slots=True)
class StaffMember:
    id: int
    institution_id: int
    roles: tuple[str, ...]
    languages: tuple[str, ...]
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class PastReferral:
    """A referral of the history, with its single offer."""

    id: int
    origin_id: int
    created_by_id: int
    provider_id: int
    agreement_id: int
    line_id: int
    service: m.ServiceKind
    specialty: str
    urgency: m.Urgency
    status: Status
    created_at: datetime
    outcome: str
    responded_at: datetime | None
    paused_s: int


@dataclass(frozen=True, slots=True)
class Ask:
    """One referral to route: who asks, for what, how urgently, in which languages."""

    requester: int
    service: m.ServiceKind
    specialty: str
    urgency: m.Urgency
    languages: tuple[str, ...]
    exclude: frozenset[int] = frozenset()


@dataclass(slots=True)
class Dataset:
    institutions: list[Institution]
    agreements: list[AgreementRecord]
    usage: list[UsageRecord]
    staff: list[StaffMember]
    history: list[PastReferral]
    asks: list[Ask] = field(default_factory=list)

    @property
    def domain(self) -> list[m.Agreement]:
        return [a.domain for a in self.agreements]

    @property
    def held(self) -> list[m.UsageEntry]:
        """The ledger rows still held (reserved or consumed), as `decide()` takes them."""
        return [
            m.UsageEntry(u.line_id, u.at)
            for u in self.usage
            if u.state is not m.UsageState.RELEASED
        ]

    def names(self) -> dict[int, str]:
        return {i.id: i.code for i in self.institutions}

    def countries(self) -> dict[int, str]:
        return {i.id: i.country for i in self.institutions}

    def kinds(self) -> dict[int, m.AgreementKind]:
        return {a.domain.id: a.kind for a in self.agreements}

    def open_queues(self) -> dict[int, int]:
        """As `referrals.repository.open_queues`: referrals a provider holds open."""
        open_at = {s.value for s in OPEN_AT_PROVIDER}
        return dict(Counter(r.provider_id for r in self.history if r.status.value in open_at))

    def median_response_hours(self) -> dict[int, float]:
        """As `referrals.repository.median_response_hours`, over the same window."""
        since = AT - HISTORY_WINDOW
        hours: dict[int, list[float]] = {}
        for r in self.history:
            offered = r.created_at
            if offered < since or r.outcome not in ("accepted", "declined"):
                continue
            if r.responded_at is not None:
                hours.setdefault(r.provider_id, []).append(
                    ((r.responded_at - offered).total_seconds() - r.paused_s) / 3600
                )
        return {p: statistics.median(v) for p, v in hours.items()}

    def languages(self) -> dict[int, frozenset[str]]:
        """As `referrals.repository.specialist_languages`: what enabled clinicians speak."""
        spoken: dict[int, set[str]] = {}
        for s in self.staff:
            if not s.disabled and {"specialist", "radiologist"} & set(s.roles):
                spoken.setdefault(s.institution_id, set()).update(s.languages)
        return {p: frozenset(v) for p, v in spoken.items()}

    def summary(self) -> dict[str, object]:
        statuses = Counter(a.domain.status.value for a in self.agreements)
        return {
            "institutions": len(self.institutions),
            "countries": len({i.country for i in self.institutions}),
            "agreements": len(self.agreements),
            "renewals": sum(1 for a in self.agreements if a.domain.renews_id is not None),
            "statuses": dict(sorted(statuses.items())),
            "coverage lines": sum(len(a.domain.lines) + len(a.withdrawn) for a in self.agreements),
            "withdrawn lines": sum(len(a.withdrawn) for a in self.agreements),
            "usage entries": len(self.usage),
            "staff": len(self.staff),
            "past referrals": len(self.history),
        }


def generate(asks: int, seed: int = SEED) -> Dataset:
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    institutions = _institutions(rng)
    agreements = _agreements(rng, institutions)
    usage = _usage(rng, agreements)
    staff = _staff(rng, institutions)
    history = _history(rng, institutions, agreements, staff)
    data = Dataset(institutions, agreements, usage, staff, history)
    data.asks = _asks(rng, data, asks)
    return data


def _institutions(rng: random.Random) -> list[Institution]:
    kinds = [k for k in m.InstitutionKind if k is not m.InstitutionKind.OPERATOR]
    rows: list[Institution] = []
    for country, tz, cities, count, _ in COUNTRIES:
        for n in range(1, count + 1):
            city = rng.choice(cities)
            kind = rng.choices(kinds, weights=[4, 5, 3, 2, 1, 2, 4, 1])[0]
            rows.append(
                Institution(len(rows) + 1, f"{country}-{city}-{n:03d}", country, city, kind, tz)
            )
    return rows


def _day(rng: random.Random, lo: int, hi: int) -> date:
    """A day between `lo` and `hi` days from the benchmark's instant."""
    return AT.date() + timedelta(days=rng.randint(lo, hi))


def _dates(rng: random.Random) -> tuple[m.AgreementStatus, date, date | None]:
    s = m.AgreementStatus
    pick = rng.choices(
        ["active", "lapsed", "future", "expired", "suspended", "draft", "terminated"],
        weights=[55, 6, 6, 14, 7, 7, 5],
    )[0]
    if pick == "active":
        start = _day(rng, -6 * 365, -10)
        return s.ACTIVE, start, None if rng.random() < 0.3 else _day(rng, 30, 5 * 365)
    if pick == "lapsed":  # still marked active: the nightly expiry task has not run yet
        return s.ACTIVE, _day(rng, -6 * 365, -3 * 365), _day(rng, -60, -1)
    if pick == "future":
        return s.ACTIVE, _day(rng, 1, 200), _day(rng, 3 * 365, 6 * 365)
    if pick == "expired":
        start = _day(rng, -11 * 365, -4 * 365)
        return s.EXPIRED, start, start + timedelta(days=rng.randint(2 * 365, 4 * 365 - 60))
    status = {"suspended": s.SUSPENDED, "draft": s.DRAFT, "terminated": s.TERMINATED}[pick]
    start = _day(rng, -5 * 365, 120)
    return status, start, None if rng.random() < 0.3 else start + timedelta(days=4 * 365)


def _parties(
    rng: random.Random, institutions: list[Institution], kind: m.AgreementKind
) -> tuple[m.Party, ...]:
    weights = [
        (3 if i.kind in PROVIDING_KINDS else 1) * (2 if i.country in ("FR", "BE", "CA") else 1)
        for i in institutions
    ]
    requester = rng.choice(institutions)
    if rng.random() < 0.82:
        pool, pool_weights = institutions, weights
        if kind is m.AgreementKind.TWINNING and rng.random() < 0.5:
            pool = [i for i in institutions if i.country == requester.country]
            pool_weights = [weights[i.id - 1] for i in pool]
        provider = requester
        while provider.id == requester.id:
            provider = rng.choices(pool, weights=pool_weights)[0]
        if kind is m.AgreementKind.TWINNING and rng.random() < 0.4:
            return (m.Party(requester.id, m.PartyRole.BOTH), m.Party(provider.id, m.PartyRole.BOTH))
        return (
            m.Party(requester.id, m.PartyRole.REQUESTER),
            m.Party(provider.id, m.PartyRole.PROVIDER),
        )
    # A consortium: several requesters and providers under one agreement.
    members = [requester.id]
    size = rng.randint(3, 5)
    while len(members) < size:
        other = rng.choices(institutions, weights=weights)[0].id
        if other not in members:
            members.append(other)
    roles = [m.PartyRole.REQUESTER, m.PartyRole.PROVIDER] + [
        rng.choice(list(m.PartyRole)) for _ in members[2:]
    ]
    return tuple(m.Party(i, r) for i, r in zip(members, roles, strict=True))


def _line(
    rng: random.Random, line_id: int, parties: tuple[m.Party, ...], like: m.CoverageLine | None
) -> m.CoverageLine:
    specialties = sorted(vocab.specialties())
    if like is not None:  # a renewal copies its predecessor's line, sometimes with a new quota
        quota = like.quota
        if quota is not None and rng.random() < 0.3:
            quota = max(2, quota * 2)
        return m.CoverageLine(
            id=line_id,
            service=like.service,
            specialties=like.specialties,
            requesters=like.requesters,
            providers=like.providers,
            quota=quota,
            period=like.period,
            response_hours=dict(like.response_hours),
            data_terms=like.data_terms,
        )
    service = rng.choices(list(SERVICE_WEIGHTS), weights=list(SERVICE_WEIGHTS.values()))[0]
    chosen: frozenset[str] = frozenset()
    if rng.random() >= 0.2:
        chosen = frozenset(rng.sample(specialties, rng.choices(range(1, 7), [5, 5, 4, 3, 2, 1])[0]))
    requesters: frozenset[int] = frozenset()
    providers: frozenset[int] = frozenset()
    if len(parties) > 2 and rng.random() < 0.4:
        can_ask = [p.institution_id for p in parties if p.role.may_request()]
        can_give = [p.institution_id for p in parties if p.role.may_provide()]
        requesters = frozenset(rng.sample(can_ask, rng.randint(1, len(can_ask))))
        providers = frozenset(rng.sample(can_give, rng.randint(1, len(can_give))))
    quota = None if rng.random() < 0.3 else rng.choice([2, 3, 5, 10, 20, 50, 100, 200])
    period = rng.choices(list(m.QuotaPeriod), weights=[35, 25, 25, 15])[0]
    hours = {
        m.Urgency.ROUTINE: rng.choice([72, 120, 168]),
        m.Urgency.URGENT: rng.choice([24, 48, 72]),
    }
    if rng.random() < 0.8:
        hours[m.Urgency.EMERGENCY] = rng.choice([4, 6, 12, 24])
    terms = m.DataTerms(rng.choice(list(m.Identification)), rng.random() < 0.7)
    return m.CoverageLine(
        id=line_id,
        service=service,
        specialties=chosen,
        requesters=requesters,
        providers=providers,
        quota=quota,
        period=period,
        response_hours=hours,
        data_terms=terms,
    )


def _line_counts(rng: random.Random) -> list[int]:
    """Lines per agreement: at least one each, 10,000 in all, a few agreements with many."""
    weights = [rng.expovariate(1.0) for _ in range(AGREEMENTS)]
    extra = Counter(rng.choices(range(AGREEMENTS), weights=weights, k=COVERAGE_LINES - AGREEMENTS))
    return [1 + extra[i] for i in range(AGREEMENTS)]


def _agreements(rng: random.Random, institutions: list[Institution]) -> list[AgreementRecord]:
    tz = {i.id: i.timezone for i in institutions}
    counts = _line_counts(rng)
    kinds = list(m.AgreementKind)
    records: list[AgreementRecord] = []
    renewed: set[int] = set()
    next_line = 1
    base = AGREEMENTS - RENEWALS
    for n in range(AGREEMENTS):
        agreement_id = n + 1
        if n < base:
            kind = rng.choices(kinds, weights=[35, 30, 25, 10])[0]
            parties = _parties(rng, institutions, kind)
            status, start, until = _dates(rng)
            predecessor, renews_id = None, None
        else:
            renewable = [
                r
                for r in records[:base]
                if r.domain.valid_until is not None
                and r.domain.status in (m.AgreementStatus.ACTIVE, m.AgreementStatus.EXPIRED)
                and r.domain.id not in renewed
            ]
            predecessor = rng.choice(renewable)
            renewed.add(predecessor.domain.id)
            kind, parties = predecessor.kind, predecessor.domain.parties
            assert predecessor.domain.valid_until is not None
            # Renewals often overlap their predecessor, which they then supersede.
            start = predecessor.domain.valid_until + timedelta(days=1 - rng.randint(0, 200))
            start = max(start, predecessor.domain.valid_from + timedelta(days=30))
            until = None if rng.random() < 0.3 else start + timedelta(days=3 * 365)
            status = m.AgreementStatus.ACTIVE if rng.random() < 0.8 else m.AgreementStatus.DRAFT
            renews_id = predecessor.domain.id
        previous = predecessor.domain.lines if predecessor else ()
        lines: list[m.CoverageLine] = []
        withdrawn: list[m.CoverageLine] = []
        for k in range(counts[n]):
            like = previous[k] if k < len(previous) else None
            line = _line(rng, next_line, parties, like)
            next_line += 1
            (withdrawn if rng.random() < 0.03 else lines).append(line)
        provider = next(p.institution_id for p in parties if p.role.may_provide())
        domain = m.Agreement(
            id=agreement_id,
            code=f"AG-{start.year}-{agreement_id:04d}",
            status=status,
            valid_from=start,
            valid_until=until,
            timezone=tz[provider],
            parties=parties,
            lines=tuple(lines),
            renews_id=renews_id,
        )
        records.append(AgreementRecord(domain, kind, tuple(withdrawn)))
    return records


def _usage(rng: random.Random, agreements: list[AgreementRecord]) -> list[UsageRecord]:
    """Ledger rows on quota lines: some long past, many in the current periods."""
    quota_lines = [
        (a.domain, line)
        for a in agreements
        if a.domain.valid_from < AT.date()
        for line in a.domain.lines
        if line.quota is not None
    ]
    mean = USAGE_TARGET / len(quota_lines)
    states = [m.UsageState.CONSUMED, m.UsageState.RESERVED, m.UsageState.RELEASED]
    rows: list[UsageRecord] = []
    for agreement, line in quota_lines:
        first = max(agreement.valid_from, AT.date() - timedelta(days=3 * 365))
        span = (AT.date() - first).days
        can_ask = sorted(line.requesters) or [
            p.institution_id for p in agreement.parties if p.role.may_request()
        ]
        can_give = sorted(line.providers) or [
            p.institution_id for p in agreement.parties if p.role.may_provide()
        ]
        for _ in range(min(int(rng.expovariate(1 / mean)), 60)):
            recent = rng.random() < 0.4
            days_ago = rng.randint(0, min(span, 60) if recent else span)
            at = AT - timedelta(days=days_ago, minutes=rng.randint(1, 24 * 60))
            requester = rng.choice(can_ask)
            provider = rng.choice([p for p in can_give if p != requester] or can_give)
            rows.append(
                UsageRecord(
                    id=len(rows) + 1,
                    line_id=line.id,
                    agreement_id=agreement.id,
                    requester_id=requester,
                    provider_id=provider,
                    service=line.service,
                    state=rng.choices(states, weights=[60, 15, 25])[0],
                    at=at.replace(second=0, microsecond=0),
                )
            )
    return rows


def _staff(rng: random.Random, institutions: list[Institution]) -> list[StaffMember]:
    spoken = {c[0]: c[4] for c in COUNTRIES}
    rows: list[StaffMember] = []
    for inst in institutions:
        roles: list[tuple[str, ...]] = [("referring_physician",), ("coordinator",)]
        roles += [("specialist",)] * rng.randint(1, 3)
        if rng.random() < 0.5:
            roles.append(("radiologist",))
        for role in roles:
            local = spoken[inst.country]
            langs = set(rng.sample(local, rng.randint(1, len(local))))
            if rng.random() < 0.3:
                langs.add("en")
            rows.append(
                StaffMember(
                    id=len(rows) + 1,
                    institution_id=inst.id,
                    roles=role,
                    languages=tuple(sorted(langs)),
                    disabled=rng.random() < 0.05,
                )
            )
    return rows


def _history(
    rng: random.Random,
    institutions: list[Institution],
    agreements: list[AgreementRecord],
    staff: list[StaffMember],
) -> list[PastReferral]:
    """Past referrals with one offer each: open ones fill queues, answered ones give speeds."""
    author = {s.institution_id: s.id for s in staff if "referring_physician" in s.roles}
    usable = [a.domain for a in agreements if a.domain.lines]
    statuses = [
        (Status.OFFERED, "pending"),
        (Status.ACCEPTED, "accepted"),
        (Status.SCHEDULED, "accepted"),
        (Status.COMPLETED, "accepted"),
        (Status.CLOSED, "accepted"),
        (Status.DECLINED, "declined"),
        (Status.CANCELLED, "withdrawn"),
    ]
    rows: list[PastReferral] = []
    for n in range(HISTORY_REFERRALS):
        agreement = rng.choice(usable)
        line = rng.choice(agreement.lines)
        origin = rng.choice([p.institution_id for p in agreement.parties if p.role.may_request()])
        givers = [p.institution_id for p in agreement.parties if p.role.may_provide()]
        provider = rng.choice([p for p in givers if p != origin] or givers)
        status, outcome = rng.choices(statuses, weights=[8, 7, 5, 35, 25, 12, 8])[0]
        created = (AT - timedelta(days=rng.randint(0, 300), minutes=rng.randint(0, 1440))).replace(
            second=0, microsecond=0
        )
        responded = None
        if outcome in ("accepted", "declined"):
            responded = created + timedelta(minutes=int(rng.lognormvariate(7.5, 0.9)))
        rows.append(
            PastReferral(
                id=n + 1,
                origin_id=origin,
                created_by_id=author[origin],
                provider_id=provider,
                agreement_id=agreement.id,
                line_id=line.id,
                service=line.service,
                specialty=min(line.specialties) if line.specialties else "general_medicine",
                urgency=rng.choice(list(m.Urgency)),
                status=status,
                created_at=created,
                outcome=outcome,
                responded_at=responded,
                paused_s=3600 * rng.randint(1, 48) if rng.random() < 0.1 else 0,
            )
        )
    return rows


def _asks(rng: random.Random, data: Dataset, count: int) -> list[Ask]:
    """Referrals to route: mostly for something the requester's agreements name, some not."""
    mine: dict[int, list[m.Agreement]] = {}
    for a in data.domain:
        for p in a.parties:
            if p.role.may_request():
                mine.setdefault(p.institution_id, []).append(a)
    requesters = sorted(mine)
    everyone = [i.id for i in data.institutions]
    specialties = sorted(vocab.specialties())
    asks: list[Ask] = []
    for _ in range(count):
        requester = rng.choice(requesters if rng.random() < 0.9 else everyone)
        lines = [line for a in mine.get(requester, []) for line in a.lines]
        if lines and rng.random() < 0.7:
            line = rng.choice(lines)
            service = line.service
            pool = sorted(line.specialties) or specialties
            specialty = rng.choice(pool)
        else:
            service = rng.choice(list(m.ServiceKind))
            specialty = rng.choice(specialties)
        partners = sorted(
            {
                p.institution_id
                for a in mine.get(requester, [])
                for p in a.parties
                if p.institution_id != requester
            }
        )
        exclude = (
            frozenset({rng.choice(partners)}) if partners and rng.random() < 0.1 else frozenset()
        )
        asks.append(
            Ask(
                requester=requester,
                service=service,
                specialty=specialty,
                urgency=rng.choices(list(m.Urgency), weights=[60, 30, 10])[0],
                languages=tuple(rng.sample(LANGUAGES, rng.randint(1, 2))),
                exclude=exclude,
            )
        )
    return asks
