"""The observed posture of mail domains: frozen facts, and the saved, versioned file format.

Every part carries a `status` and the `errors` that explain it, so a missing fact is visible as such
(a DNS timeout is `status="error"` with a `dns-timeout` error, never "absent"). The JSON written by
`PostureReport.to_json` is what `--save` writes and `--load` / `exconn audit` read back:

    {"format": "exconn-posture", "version": 1, "observed_at": "...Z", "domains": [DomainPosture...]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exconn.posture.errors import ProbeError

FORMAT = "exconn-posture"
VERSION = 1

JsonObject = dict[str, Any]


class FactsFormatError(ValueError):
    """A saved posture file that is not ours, of an unknown version, or malformed."""


# --- JSON helpers -------------------------------------------------------------------------------


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FactsFormatError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _list(value: object, what: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise FactsFormatError(f"{what}: expected a list, got {type(value).__name__}")
    return value


def _str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise FactsFormatError(f"{what}.{key}: expected a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str, what: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise FactsFormatError(f"{what}.{key}: expected a string or null")
    return value


def _opt_int(data: Mapping[str, Any], key: str, what: str) -> int | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise FactsFormatError(f"{what}.{key}: expected an integer or null")
    return value


def _opt_bool(data: Mapping[str, Any], key: str, what: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise FactsFormatError(f"{what}.{key}: expected true, false or null")
    return value


def _strs(data: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    values = _list(data.get(key, []), f"{what}.{key}")
    if not all(isinstance(v, str) for v in values):
        raise FactsFormatError(f"{what}.{key}: expected a list of strings")
    return tuple(values)


def errors_to_json(errors: Sequence[ProbeError]) -> list[dict[str, str]]:
    return [e.to_json() for e in errors]


def errors_from_json(value: object, what: str) -> tuple[ProbeError, ...]:
    out = []
    for i, item in enumerate(_list(value if value is not None else [], what)):
        data = _obj(item, f"{what}[{i}]")
        out.append(ProbeError(_str(data, "type", what), _str(data, "detail", what)))
    return tuple(out)


# --- MX -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MxRecord:
    host: str  # lower case, no trailing dot; "" for the null MX target "."
    preference: int

    def to_json(self) -> JsonObject:
        return {"host": self.host, "preference": self.preference}


@dataclass(frozen=True, slots=True)
class MxFacts:
    """`status`: ok | null (RFC 7505) | implicit (RFC 5321 §5.1: the domain itself) | none | nxdomain |
    error."""

    status: str
    records: tuple[MxRecord, ...] = ()
    authenticated: bool = False  # the MX answer carried the AD bit
    errors: tuple[ProbeError, ...] = ()

    @property
    def null_mx(self) -> bool:
        return self.status == "null"

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(r.host for r in self.records if r.host)

    def to_json(self) -> JsonObject:
        return {
            "status": self.status,
            "null_mx": self.null_mx,
            "implicit": self.status == "implicit",
            "authenticated": self.authenticated,
            "errors": errors_to_json(self.errors),
        }

    @classmethod
    def from_json(cls, records: object, data: object) -> MxFacts:
        status = _obj(data, "mx_lookup")
        parsed = []
        for i, item in enumerate(_list(records, "mx")):
            rec = _obj(item, f"mx[{i}]")
            preference = _opt_int(rec, "preference", "mx")
            parsed.append(MxRecord(_str(rec, "host", "mx"), preference or 0))
        return cls(
            status=_str(status, "status", "mx_lookup"),
            records=tuple(parsed),
            authenticated=bool(_opt_bool(status, "authenticated", "mx_lookup")),
            errors=errors_from_json(status.get("errors"), "mx_lookup.errors"),
        )


# --- MTA-STS ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MtaStsPolicy:
    version: str
    mode: str  # enforce | testing | none
    mx: tuple[str, ...]
    max_age: int

    def to_json(self) -> JsonObject:
        return {"version": self.version, "mode": self.mode, "mx": list(self.mx), "max_age": self.max_age}

    @classmethod
    def from_json(cls, value: object) -> MtaStsPolicy:
        data = _obj(value, "mta_sts.policy")
        return cls(
            version=_str(data, "version", "mta_sts.policy"),
            mode=_str(data, "mode", "mta_sts.policy"),
            mx=_strs(data, "mx", "mta_sts.policy"),
            max_age=_opt_int(data, "max_age", "mta_sts.policy") or 0,
        )


@dataclass(frozen=True, slots=True)
class MtaStsFacts:
    """`status`: valid | absent | invalid | error (RFC 8461)."""

    status: str
    record: str | None = None
    id: str | None = None
    policy: MtaStsPolicy | None = None
    errors: tuple[ProbeError, ...] = ()

    def to_json(self) -> JsonObject:
        return {
            "status": self.status,
            "record": self.record,
            "id": self.id,
            "policy": self.policy.to_json() if self.policy else None,
            "errors": errors_to_json(self.errors),
        }

    @classmethod
    def from_json(cls, value: object) -> MtaStsFacts:
        data = _obj(value, "mta_sts")
        policy = data.get("policy")
        return cls(
            status=_str(data, "status", "mta_sts"),
            record=_opt_str(data, "record", "mta_sts"),
            id=_opt_str(data, "id", "mta_sts"),
            policy=MtaStsPolicy.from_json(policy) if policy is not None else None,
            errors=errors_from_json(data.get("errors"), "mta_sts.errors"),
        )


# --- TLS-RPT ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsRptFacts:
    """`status`: valid | absent | invalid | error (RFC 8460)."""

    status: str
    record: str | None = None
    rua: tuple[str, ...] = ()
    errors: tuple[ProbeError, ...] = ()

    def to_json(self) -> JsonObject:
        return {
            "status": self.status,
            "record": self.record,
            "rua": list(self.rua),
            "errors": errors_to_json(self.errors),
        }

    @classmethod
    def from_json(cls, value: object) -> TlsRptFacts:
        data = _obj(value, "tlsrpt")
        return cls(
            status=_str(data, "status", "tlsrpt"),
            record=_opt_str(data, "record", "tlsrpt"),
            rua=_strs(data, "rua", "tlsrpt"),
            errors=errors_from_json(data.get("errors"), "tlsrpt.errors"),
        )


# --- DANE ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    usage: int
    selector: int
    matching: int
    data: str  # hex
    usable: bool  # RFC 7672 §3.1: DANE-TA(2) / DANE-EE(3) with known selector and matching type

    def to_json(self) -> JsonObject:
        return {
            "usage": self.usage,
            "selector": self.selector,
            "matching": self.matching,
            "data": self.data,
            "usable": self.usable,
        }

    @classmethod
    def from_json(cls, value: object) -> TlsaRecord:
        data = _obj(value, "tlsa")
        return cls(
            usage=_opt_int(data, "usage", "tlsa") or 0,
            selector=_opt_int(data, "selector", "tlsa") or 0,
            matching=_opt_int(data, "matching", "tlsa") or 0,
            data=_str(data, "data", "tlsa"),
            usable=bool(_opt_bool(data, "usable", "tlsa")),
        )


@dataclass(frozen=True, slots=True)
class DaneHost:
    """DANE for one MX host (RFC 7672).

    `status`: valid (secure usable TLSA, presented chain matched) | unverified (secure usable TLSA, no
    chain to match) | invalid (secure TLSA that nothing matched, or none usable) | absent (securely
    denied) | insecure (no AD bit: no DANE judgement) | error (DNS failure, `dnssec-invalid` for bogus).
    """

    host: str
    status: str
    name: str  # the TLSA owner name, _25._tcp.<host>
    validated_by: str | None = None  # the validating resolver that set AD
    tlsa: tuple[TlsaRecord, ...] = ()
    matched: bool | None = None
    errors: tuple[ProbeError, ...] = ()

    def to_json(self) -> JsonObject:
        return {
            "host": self.host,
            "status": self.status,
            "name": self.name,
            "validated_by": self.validated_by,
            "tlsa": [t.to_json() for t in self.tlsa],
            "matched": self.matched,
            "errors": errors_to_json(self.errors),
        }

    @classmethod
    def from_json(cls, value: object) -> DaneHost:
        data = _obj(value, "dane.hosts[]")
        return cls(
            host=_str(data, "host", "dane.hosts[]"),
            status=_str(data, "status", "dane.hosts[]"),
            name=_str(data, "name", "dane.hosts[]"),
            validated_by=_opt_str(data, "validated_by", "dane.hosts[]"),
            tlsa=tuple(TlsaRecord.from_json(t) for t in _list(data.get("tlsa", []), "tlsa")),
            matched=_opt_bool(data, "matched", "dane.hosts[]"),
            errors=errors_from_json(data.get("errors"), "dane.hosts[].errors"),
        )


@dataclass(frozen=True, slots=True)
class DaneFacts:
    """`status` summarises the hosts: error > invalid > valid/unverified > insecure/absent; `not-applicable`
    when there is no MX host to check."""

    status: str
    hosts: tuple[DaneHost, ...] = ()
    errors: tuple[ProbeError, ...] = ()

    def to_json(self) -> JsonObject:
        return {
            "status": self.status,
            "hosts": [h.to_json() for h in self.hosts],
            "errors": errors_to_json(self.errors),
        }

    @classmethod
    def from_json(cls, value: object) -> DaneFacts:
        data = _obj(value, "dane")
        return cls(
            status=_str(data, "status", "dane"),
            hosts=tuple(DaneHost.from_json(h) for h in _list(data.get("hosts", []), "dane.hosts")),
            errors=errors_from_json(data.get("errors"), "dane.errors"),
        )


def summarise_dane(hosts: Sequence[DaneHost]) -> str:
    statuses = {h.status for h in hosts}
    if not statuses:
        return "not-applicable"
    for status in ("error", "invalid"):
        if status in statuses:
            return status
    if statuses == {"valid"}:
        return "valid"
    if statuses <= {"valid", "unverified"}:
        return "unverified"
    if len(statuses) == 1:
        return statuses.pop()  # all insecure, or all absent
    return "partial"


# --- MX hosts (the SMTP probe) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    subject: str
    sans: tuple[str, ...]
    issuer: str
    not_before: str | None
    not_after: str | None
    trusted: bool | None
    name_matches: bool | None
    expired: bool | None

    def to_json(self) -> JsonObject:
        return {
            "subject": self.subject,
            "sans": list(self.sans),
            "issuer": self.issuer,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "trusted": self.trusted,
            "name_matches": self.name_matches,
            "expired": self.expired,
        }

    @classmethod
    def from_json(cls, value: object) -> CertificateFacts:
        data = _obj(value, "certificate")
        return cls(
            subject=_opt_str(data, "subject", "certificate") or "",
            sans=_strs(data, "sans", "certificate"),
            issuer=_opt_str(data, "issuer", "certificate") or "",
            not_before=_opt_str(data, "not_before", "certificate"),
            not_after=_opt_str(data, "not_after", "certificate"),
            trusted=_opt_bool(data, "trusted", "certificate"),
            name_matches=_opt_bool(data, "name_matches", "certificate"),
            expired=_opt_bool(data, "expired", "certificate"),
        )


@dataclass(frozen=True, slots=True)
class SmtpReplyFacts:
    code: int
    text: str
    enhanced: str | None = None

    def to_json(self) -> JsonObject:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}

    @classmethod
    def from_json(cls, value: object) -> SmtpReplyFacts:
        data = _obj(value, "plaintext_mail_from")
        return cls(
            code=_opt_int(data, "code", "plaintext_mail_from") or 0,
            text=_opt_str(data, "text", "plaintext_mail_from") or "",
            enhanced=_opt_str(data, "enhanced", "plaintext_mail_from"),
        )


@dataclass(frozen=True, slots=True)
class MxHostFacts:
    """One MX host: whether the MTA-STS policy covers it and what the SMTP probe saw.

    `probe`: done | skipped (`--no-smtp`) | error (no address, connection failed: see `errors`).
    Fields the probe did not reach are None.
    """

    host: str
    policy_match: bool | None
    probe: str = "skipped"
    address: str | None = None
    port: int | None = None
    banner: str | None = None
    starttls: bool | None = None
    tls_established: bool | None = None
    tls_version: str | None = None
    cipher: str | None = None
    certificate: CertificateFacts | None = None
    plaintext_mail_from: SmtpReplyFacts | None = None
    plaintext_mail: str | None = None  # accepted | tls-required | auth-required | refused | unknown
    errors: tuple[ProbeError, ...] = ()

    def to_json(self) -> JsonObject:
        return {
            "host": self.host,
            "policy_match": self.policy_match,
            "probe": self.probe,
            "address": self.address,
            "port": self.port,
            "banner": self.banner,
            "starttls": self.starttls,
            "tls_established": self.tls_established,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "certificate": self.certificate.to_json() if self.certificate else None,
            "plaintext_mail_from": self.plaintext_mail_from.to_json() if self.plaintext_mail_from else None,
            "plaintext_mail": self.plaintext_mail,
            "errors": errors_to_json(self.errors),
        }

    @classmethod
    def from_json(cls, value: object) -> MxHostFacts:
        data = _obj(value, "mx_hosts[]")
        what = "mx_hosts[]"
        cert = data.get("certificate")
        reply = data.get("plaintext_mail_from")
        return cls(
            host=_str(data, "host", what),
            policy_match=_opt_bool(data, "policy_match", what),
            probe=_opt_str(data, "probe", what) or "skipped",
            address=_opt_str(data, "address", what),
            port=_opt_int(data, "port", what),
            banner=_opt_str(data, "banner", what),
            starttls=_opt_bool(data, "starttls", what),
            tls_established=_opt_bool(data, "tls_established", what),
            tls_version=_opt_str(data, "tls_version", what),
            cipher=_opt_str(data, "cipher", what),
            certificate=CertificateFacts.from_json(cert) if cert is not None else None,
            plaintext_mail_from=SmtpReplyFacts.from_json(reply) if reply is not None else None,
            plaintext_mail=_opt_str(data, "plaintext_mail", what),
            errors=errors_from_json(data.get("errors"), "mx_hosts[].errors"),
        )


# --- A domain, and a run ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainPosture:
    domain: str
    observed_at: str  # ISO 8601 UTC, "...Z"
    mx: MxFacts
    mta_sts: MtaStsFacts
    tlsrpt: TlsRptFacts
    dane: DaneFacts
    mx_hosts: tuple[MxHostFacts, ...] = ()
    errors: tuple[ProbeError, ...] = field(default=())  # failures outside any one part

    def to_json(self) -> JsonObject:
        return {
            "domain": self.domain,
            "observed_at": self.observed_at,
            "mx": [r.to_json() for r in self.mx.records],
            "mx_lookup": self.mx.to_json(),
            "mta_sts": self.mta_sts.to_json(),
            "tlsrpt": self.tlsrpt.to_json(),
            "dane": self.dane.to_json(),
            "mx_hosts": [h.to_json() for h in self.mx_hosts],
            "errors": errors_to_json(self.errors),
        }

    @classmethod
    def from_json(cls, value: object) -> DomainPosture:
        data = _obj(value, "domains[]")
        return cls(
            domain=_str(data, "domain", "domains[]"),
            observed_at=_str(data, "observed_at", "domains[]"),
            mx=MxFacts.from_json(data.get("mx", []), data.get("mx_lookup")),
            mta_sts=MtaStsFacts.from_json(data.get("mta_sts")),
            tlsrpt=TlsRptFacts.from_json(data.get("tlsrpt")),
            dane=DaneFacts.from_json(data.get("dane")),
            mx_hosts=tuple(MxHostFacts.from_json(h) for h in _list(data.get("mx_hosts", []), "mx_hosts")),
            errors=errors_from_json(data.get("errors"), "domains[].errors"),
        )


@dataclass(frozen=True, slots=True)
class PostureReport:
    """A run over many domains; its JSON is the saved, versioned posture file."""

    observed_at: str
    domains: tuple[DomainPosture, ...]

    def to_json(self) -> JsonObject:
        return {
            "format": FORMAT,
            "version": VERSION,
            "observed_at": self.observed_at,
            "domains": [d.to_json() for d in self.domains],
        }

    @classmethod
    def from_json(cls, value: object) -> PostureReport:
        data = _obj(value, "posture file")
        if data.get("format") != FORMAT:
            raise FactsFormatError(f"not an {FORMAT} file (format={data.get('format')!r})")
        if data.get("version") != VERSION:
            raise FactsFormatError(
                f"unsupported {FORMAT} version {data.get('version')!r} (this exconn reads 1)"
            )
        return cls(
            observed_at=_str(data, "observed_at", "posture file"),
            domains=tuple(DomainPosture.from_json(d) for d in _list(data.get("domains"), "domains")),
        )
