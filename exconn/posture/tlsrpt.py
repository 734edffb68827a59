"""SMTP TLS Reporting (RFC 8460 §3): the `_smtp._tls.<domain>` TXT record.

Records not beginning `v=TLSRPTv1;` are discarded; not exactly one left means the domain does not do
TLS-RPT; `rua` is required and lists `mailto:` or `https:` URIs separated by commas (a comma or semicolon
inside a URI must be percent-encoded); other fields are extensions and ignored.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import dns.resolver

from exconn.posture import dns as pdns
from exconn.posture.errors import ProbeError
from exconn.posture.facts import TlsRptFacts, TlsRptStatus

_DELIM = re.compile(r"[ \t]*;[ \t]*")
_RUA_SPLIT = re.compile(r"[ \t]*,[ \t]*")
_EXT_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+")
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+=%]+")
_MAILBOX = re.compile(r"[^@\s]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
ERROR_TYPE = "tlsrpt-invalid"


def _invalid(detail: str) -> ProbeError:
    return ProbeError(ERROR_TYPE, detail)


def check_uri(uri: str) -> str | None:
    """Why `uri` is not a usable TLS-RPT `rua` destination, or None when it is."""
    if not _URI_CHARS.fullmatch(uri):
        return f"rua URI {uri!r} has characters a URI cannot contain"
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "mailto":
        address = parts.path.split("?", 1)[0]
        if not _MAILBOX.fullmatch(address):
            return f"rua URI {uri!r} is not mailto:<address>"
        return None
    if scheme == "https":
        if not parts.hostname:
            return f"rua URI {uri!r} has no host"
        return None
    return f"rua URI {uri!r}: scheme {scheme or '(none)'!r} is not mailto or https (RFC 8460 §3)"


def parse_tlsrpt_record(record: str) -> tuple[tuple[str, ...], list[ProbeError]]:
    """The rua URIs of one record, and what is wrong with it."""
    if not record.startswith("v=TLSRPTv1"):
        return (), [_invalid(f"TXT record {record!r} does not begin with v=TLSRPTv1")]
    fields = _DELIM.split(record[len("v=TLSRPTv1") :])
    if fields[0] != "":
        return (), [_invalid(f"TXT record {record!r}: expected ';' after v=TLSRPTv1")]
    fields = fields[1:]
    if fields and fields[-1] == "":
        fields = fields[:-1]
    errors: list[ProbeError] = []
    rua: list[str] = []
    saw_rua = False
    for item in fields:
        if item.startswith("rua="):
            if saw_rua:
                continue  # the first rua wins
            saw_rua = True
            for uri in _RUA_SPLIT.split(item[4:]):
                problem = check_uri(uri) if uri else f"empty URI in {item!r}"
                if problem is None:
                    rua.append(uri)
                else:
                    errors.append(_invalid(problem))
        elif not _EXT_FIELD.fullmatch(item):
            errors.append(_invalid(f"TXT record field {item!r} is not name=value (RFC 8460 §3)"))
    if not saw_rua:
        errors.append(_invalid(f"TXT record {record!r} has no rua field (RFC 8460 §3)"))
    return tuple(rua), errors


def tlsrpt_name(domain: str) -> str:
    return f"_smtp._tls.{domain}"


def check_tlsrpt(domain: str, *, resolver: dns.resolver.Resolver) -> TlsRptFacts:
    return judge_tlsrpt(tlsrpt_name(domain), pdns.lookup(resolver, tlsrpt_name(domain), "TXT"))


def judge_tlsrpt(name: str, result: pdns.Lookup) -> TlsRptFacts:
    """The TXT answer at `name` (`_smtp._tls.<domain>`) judged (RFC 8460 §3)."""
    if result.status == "error":
        return TlsRptFacts(status=TlsRptStatus.ERROR, errors=result.errors)
    records = [pdns.txt_strings(r) for r in result.records]
    kept = [r for r in records if r.startswith("v=TLSRPTv1;")]
    if not kept:
        return TlsRptFacts(status=TlsRptStatus.ABSENT)
    if len(kept) > 1:
        detail = f"{len(kept)} TXT records at {name} begin with v=TLSRPTv1; RFC 8460 §3: no TLS-RPT applies"
        return TlsRptFacts(status=TlsRptStatus.INVALID, record=kept[0], errors=(_invalid(detail),))
    rua, errors = parse_tlsrpt_record(kept[0])
    return TlsRptFacts(
        status=TlsRptStatus.INVALID if errors else TlsRptStatus.VALID,
        record=kept[0],
        rua=rua,
        errors=tuple(errors),
    )
