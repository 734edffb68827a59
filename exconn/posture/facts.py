"""The observed posture of mail domains: frozen facts, and the saved, versioned file format.

Every part carries a `status` and the `errors` that explain it, so a missing fact is visible as such
(a DNS timeout is `status=MxStatus.ERROR` with a `dns-timeout` error, never "absent"). Statuses are
`StrEnum`s whose values are the words of the saved format, so they compare equal to those strings.
The JSON written by `PostureReport.to_json` (through the generic codec in `codec.py`) is what
`--save` writes and `--load` / `exconn audit` read back:

    {"format": "exconn-posture", "version": 1, "observed_at": "...Z", "domains": [DomainPosture...]}
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exconn.posture import codec
from exconn.posture.codec import FactsFormatError, codec_field
from exconn.posture.errors import ProbeError

__all__ = [
    "FORMAT",
    "VERSION",
    "CertificateFacts",
    "DaneFacts",
    "DaneHost",
    "DaneStatus",
    "DomainPosture",
    "FactsFormatError",
    "MtaStsFacts",
    "MtaStsPolicy",
    "MtaStsStatus",
    "MxFacts",
    "MxHostFacts",
    "MxRecord",
    "MxStatus",
    "PlainMailVerdict",
    "PostureReport",
    "ProbeStatus",
    "SmtpReplyFacts",
    "TlsRptFacts",
    "TlsRptStatus",
    "summarise_dane",
]

FORMAT = "exconn-posture"
VERSION = 1

JsonObject = dict[str, Any]


class MxStatus(enum.StrEnum):
    OK = "ok"
    NULL = "null"  # RFC 7505
    IMPLICIT = "implicit"  # RFC 5321 §5.1: the domain itself
    NONE = "none"
    NXDOMAIN = "nxdomain"
    ERROR = "error"


class MtaStsStatus(enum.StrEnum):  # RFC 8461
    VALID = "valid"
    ABSENT = "absent"
    INVALID = "invalid"
    ERROR = "error"


class TlsRptStatus(enum.StrEnum):  # RFC 8460
    VALID = "valid"
    ABSENT = "absent"
    INVALID = "invalid"
    ERROR = "error"


class DaneStatus(enum.StrEnum):
    """Per host: valid | unverified | invalid | absent | insecure | error; the domain summary adds
    not-applicable (no MX host) and partial (hosts disagree)."""

    VALID = "valid"
    UNVERIFIED = "unverified"
    INVALID = "invalid"
    ABSENT = "absent"
    INSECURE = "insecure"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"
    PARTIAL = "partial"


class ProbeStatus(enum.StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # --no-smtp
    ERROR = "error"  # no address, connection failed: see `errors`


class PlainMailVerdict(enum.StrEnum):
    """What the reply to `MAIL FROM:<>` before STARTTLS says about the endpoint."""

    ACCEPTED = "accepted"  # 2xx: opportunistic TLS, plaintext mail accepted
    TLS_REQUIRED = "tls-required"  # 530 5.7.0 ... STARTTLS, 451 5.7.3
    AUTH_REQUIRED = "auth-required"  # 530 5.7.57: a submission endpoint, not an MX
    REFUSED = "refused"  # any other reply
    UNKNOWN = "unknown"  # no reply, or never tried


def _coerce(obj: object, name: str, kind: type[enum.StrEnum]) -> None:
    """Accept the plain word too (tests and callers written before the enums): store the member."""
    value = getattr(obj, name)
    if value is not None and not isinstance(value, kind):
        object.__setattr__(obj, name, kind(value))


# --- MX -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MxRecord:
    host: str  # lower case, no trailing dot; "" for the null MX target "."
    preference: int


def _mx_status_keys(status: MxStatus) -> Iterable[tuple[str, Any]]:
    # The saved format spells two statuses out as booleans next to it (readers of version 1 use them).
    return (("status", status.value), ("null_mx", status == "null"), ("implicit", status == "implicit"))


@dataclass(frozen=True, slots=True)
class MxFacts:
    """The MX look-up; saved as `mx` (the records) and `mx_lookup` (the rest) of the domain."""

    status: MxStatus = field(
        metadata=codec_field(
            encode=_mx_status_keys,
            decode=lambda data, what: codec.decode_value(MxStatus, data.get("status"), f"{what}.status"),
        )
    )
    records: tuple[MxRecord, ...] = field(default=(), metadata=codec_field(skip=True))
    authenticated: bool = False  # the MX answer carried the AD bit
    errors: tuple[ProbeError, ...] = ()

    def __post_init__(self) -> None:
        _coerce(self, "status", MxStatus)

    @property
    def null_mx(self) -> bool:
        return self.status == MxStatus.NULL

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(r.host for r in self.records if r.host)


# --- MTA-STS ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MtaStsPolicy:
    version: str
    mode: str  # enforce | testing | none; also the policy exconn proposes (rules build it)
    mx: tuple[str, ...]
    max_age: int


@dataclass(frozen=True, slots=True)
class MtaStsFacts:
    status: MtaStsStatus
    record: str | None = None
    id: str | None = None
    policy: MtaStsPolicy | None = None
    errors: tuple[ProbeError, ...] = ()

    def __post_init__(self) -> None:
        _coerce(self, "status", MtaStsStatus)


# --- TLS-RPT ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsRptFacts:
    status: TlsRptStatus
    record: str | None = None
    rua: tuple[str, ...] = ()
    errors: tuple[ProbeError, ...] = ()

    def __post_init__(self) -> None:
        _coerce(self, "status", TlsRptStatus)


# --- DANE ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    usage: int
    selector: int
    matching: int
    data: str  # hex
    usable: bool  # RFC 7672 §3.1: DANE-TA(2) / DANE-EE(3) with known selector and matching type


@dataclass(frozen=True, slots=True)
class DaneHost:
    """DANE for one MX host (RFC 7672).

    `status`: valid (secure usable TLSA, presented chain matched) | unverified (secure usable TLSA, no
    chain to match) | invalid (secure TLSA that nothing matched, or none usable) | absent (securely
    denied) | insecure (no AD bit: no DANE judgement) | error (DNS failure, `dnssec-invalid` for bogus).
    """

    host: str
    status: DaneStatus
    name: str  # the TLSA owner name, _25._tcp.<host>
    validated_by: str | None = None  # the validating resolver that set AD
    tlsa: tuple[TlsaRecord, ...] = ()
    matched: bool | None = None
    errors: tuple[ProbeError, ...] = ()

    def __post_init__(self) -> None:
        _coerce(self, "status", DaneStatus)


@dataclass(frozen=True, slots=True)
class DaneFacts:
    """`status` summarises the hosts: error > invalid > valid/unverified > insecure/absent; `not-applicable`
    when there is no MX host to check."""

    status: DaneStatus
    hosts: tuple[DaneHost, ...] = ()
    errors: tuple[ProbeError, ...] = ()

    def __post_init__(self) -> None:
        _coerce(self, "status", DaneStatus)


def summarise_dane(hosts: Sequence[DaneHost]) -> DaneStatus:
    statuses = {h.status for h in hosts}
    if not statuses:
        return DaneStatus.NOT_APPLICABLE
    for status in (DaneStatus.ERROR, DaneStatus.INVALID):
        if status in statuses:
            return status
    if statuses == {DaneStatus.VALID}:
        return DaneStatus.VALID
    if statuses <= {DaneStatus.VALID, DaneStatus.UNVERIFIED}:
        return DaneStatus.UNVERIFIED
    if len(statuses) == 1:
        return statuses.pop()  # all insecure, or all absent
    return DaneStatus.PARTIAL


# --- MX hosts (the SMTP probe) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """The MX certificate as judged by the probe; `chain_der` (leaf first, as presented) feeds the
    DANE match in the same run and is never saved, so a loaded certificate has none."""

    subject: str  # RFC 4514
    sans: tuple[str, ...]  # DNS names of the subjectAltName
    issuer: str  # RFC 4514
    not_before: str | None  # ISO 8601 UTC, e.g. 2025-01-31T12:00:00Z
    not_after: str | None
    trusted: bool | None  # chains to the trust store (judged inside the validity period)
    name_matches: bool | None  # RFC 6125 match of the MX host name
    expired: bool | None  # now is after not_after
    chain_der: tuple[bytes, ...] = field(
        default=(), repr=False, compare=False, metadata=codec_field(skip=True)
    )

    @property
    def leaf_der(self) -> bytes:
        return self.chain_der[0]


@dataclass(frozen=True, slots=True)
class SmtpReplyFacts:
    """One SMTP reply: what the probe reads, and what the posture keeps of `MAIL FROM:<>`."""

    code: int
    enhanced: str | None  # RFC 3463 enhanced status code of the first line, e.g. "5.7.0"
    text: str  # the lines' text, joined by "\n", enhanced code removed

    def __str__(self) -> str:
        head = f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)
        return f"{head} {self.text}".rstrip()


@dataclass(frozen=True, slots=True)
class MxHostFacts:
    """One MX host: whether the MTA-STS policy covers it and what the SMTP probe saw.

    Fields the probe did not reach are None.
    """

    host: str
    policy_match: bool | None
    probe: ProbeStatus = ProbeStatus.SKIPPED
    address: str | None = None
    port: int | None = None
    banner: str | None = None
    starttls: bool | None = None
    tls_established: bool | None = None
    tls_version: str | None = None
    cipher: str | None = None
    certificate: CertificateFacts | None = None
    plaintext_mail_from: SmtpReplyFacts | None = None
    plaintext_mail: PlainMailVerdict | None = None
    errors: tuple[ProbeError, ...] = ()

    def __post_init__(self) -> None:
        _coerce(self, "probe", ProbeStatus)
        _coerce(self, "plaintext_mail", PlainMailVerdict)


# --- A domain, and a run ------------------------------------------------------------------------


def _mx_keys(mx: MxFacts) -> Iterable[tuple[str, Any]]:
    return (("mx", codec.to_json(mx.records)), ("mx_lookup", codec.to_json(mx)))


def _mx_from(data: Mapping[str, Any], what: str) -> MxFacts:
    records = codec.decode_value(tuple[MxRecord, ...], data.get("mx", []), f"{what}.mx")
    lookup = codec.from_json(MxFacts, data.get("mx_lookup"), f"{what}.mx_lookup")
    return MxFacts(lookup.status, records, lookup.authenticated, lookup.errors)


@dataclass(frozen=True, slots=True)
class DomainPosture:
    domain: str
    observed_at: str  # ISO 8601 UTC, "...Z"
    mx: MxFacts = field(metadata=codec_field(encode=_mx_keys, decode=_mx_from))
    mta_sts: MtaStsFacts
    tlsrpt: TlsRptFacts
    dane: DaneFacts
    mx_hosts: tuple[MxHostFacts, ...] = ()
    errors: tuple[ProbeError, ...] = ()  # failures outside any one part

    def to_json(self) -> JsonObject:
        data: JsonObject = codec.to_json(self)
        return data


@dataclass(frozen=True, slots=True)
class PostureReport:
    """A run over many domains; its JSON is the saved, versioned posture file."""

    observed_at: str
    domains: tuple[DomainPosture, ...]

    def to_json(self) -> JsonObject:
        return {"format": FORMAT, "version": VERSION, **codec.to_json(self)}

    @classmethod
    def from_json(cls, value: object) -> PostureReport:
        data = codec.expect_object(value, "posture file")
        if data.get("format") != FORMAT:
            raise FactsFormatError(f"not an {FORMAT} file (format={data.get('format')!r})")
        if data.get("version") != VERSION:
            raise FactsFormatError(
                f"unsupported {FORMAT} version {data.get('version')!r} (this exconn reads {VERSION})"
            )
        return codec.from_json(cls, data, "posture file")
