"""MTA-STS (RFC 8461): TXT discovery, the HTTPS policy fetch, and the policy's syntax, to the letter.

- §3.1 discovery: TXT at `_mta-sts.<domain>`; the strings of one record are concatenated; records not
  beginning `v=STSv1;` are discarded; not exactly one left means no policy; `id` is 1-32 letters/digits.
- §3.3 fetch: `https://mta-sts.<domain>/.well-known/mta-sts.txt`, the policy host resolved through *our*
  resolver, TLS with SNI and a certificate valid for the policy host, HTTP 3xx never followed, only 200,
  `text/plain`, at most 64 KiB read incrementally, and one deadline for the whole fetch.
- §3.2 policy: LF or CRLF lines, `key: value`; version/mode/max_age once (the first of a repeated key
  wins), `mx` repeated and required unless mode is `none`, max_age 0-31557600, unknown keys ignored.
- §4.1 matching: an `mx` pattern `*.example.com` covers exactly one extra label.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import dns.resolver

from exconn.names import wildcard_matches
from exconn.posture import adns, aio, https
from exconn.posture import dns as pdns
from exconn.posture.certs import TrustStore
from exconn.posture.errors import ProbeError
from exconn.posture.facts import MtaStsFacts, MtaStsPolicy, MtaStsStatus

MAX_AGE_LIMIT = 31557600
MODES = ("enforce", "testing", "none")

_DELIM = re.compile(r"[ \t]*;[ \t]*")
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_EXT_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+")
_POLICY_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*(.*?)[ \t]*")
_EXT_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_MAX_AGE = re.compile(r"[0-9]{1,10}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


def _invalid(detail: str) -> ProbeError:
    return ProbeError("sts-policy-invalid", detail)


# --- §3.1 the TXT record ------------------------------------------------------------------------


def parse_sts_record(record: str) -> tuple[str | None, list[ProbeError]]:
    """Parse one `v=STSv1; id=...;` record; return its id (None when invalid) and what is wrong."""
    if not record.startswith("v=STSv1"):
        return None, [_invalid(f"TXT record {record!r} does not begin with v=STSv1")]
    fields = _DELIM.split(record[len("v=STSv1") :])
    errors: list[ProbeError] = []
    if fields[0] != "":
        return None, [_invalid(f"TXT record {record!r}: expected ';' after v=STSv1")]
    fields = fields[1:]
    if fields and fields[-1] == "":
        fields = fields[:-1]  # the optional trailing delimiter
    sts_id: str | None = None
    saw_id = False
    for item in fields:
        if item.startswith("id="):
            saw_id = True
            value = item[3:]
            if not _STS_ID.fullmatch(value):
                errors.append(
                    _invalid(f"TXT record id {value!r} is not 1-32 letters and digits (RFC 8461 §3.1)")
                )
            elif sts_id is None:
                sts_id = value
        elif not _EXT_FIELD.fullmatch(item):
            errors.append(_invalid(f"TXT record field {item!r} is not name=value (RFC 8461 §3.1)"))
    if not saw_id:
        errors.append(_invalid(f"TXT record {record!r} has no id field (RFC 8461 §3.1)"))
    return (sts_id if not errors else None), errors


@dataclass(frozen=True, slots=True)
class Discovery:
    status: str  # "found" | "absent" | "invalid" | "error"
    record: str | None
    id: str | None
    errors: tuple[ProbeError, ...]


def sts_name(domain: str) -> str:
    return f"_mta-sts.{domain}"


def judge_discovery(name: str, result: pdns.Lookup) -> Discovery:
    """The TXT answer at `name` (`_mta-sts.<domain>`) judged (RFC 8461 §3.1)."""
    if result.status == "error":
        return Discovery("error", None, None, result.errors)
    if result.missing:
        return Discovery("absent", None, None, ())
    records = [pdns.txt_strings(r) for r in result.records]
    sts = [r for r in records if r.startswith("v=STSv1;")]
    if not sts:
        return Discovery("absent", None, None, ())
    if len(sts) > 1:
        detail = f"{len(sts)} TXT records at {name} begin with v=STSv1; RFC 8461 §3.1: no policy applies"
        return Discovery("invalid", sts[0], None, (_invalid(detail),))
    sts_id, errors = parse_sts_record(sts[0])
    if errors:
        return Discovery("invalid", sts[0], None, tuple(errors))
    return Discovery("found", sts[0], sts_id, ())


# --- §3.2 the policy ----------------------------------------------------------------------------


def parse_policy(text: str) -> tuple[MtaStsPolicy | None, list[ProbeError]]:
    """Parse a policy body; the policy is None when anything required is missing or malformed."""
    if text == "":
        return None, [_invalid("the policy is empty")]
    lines = text.split("\n")
    if lines[-1] == "":
        lines = lines[:-1]  # one final line terminator is allowed
    errors: list[ProbeError] = []
    first: dict[str, str] = {}
    mx: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        match = _POLICY_LINE.fullmatch(line)
        if match is None:
            shown = line if len(line) <= 60 else line[:57] + "..."
            errors.append(_invalid(f"policy line {number} {shown!r} is not 'key: value' (RFC 8461 §3.2)"))
            continue
        key, value = match.group(1), match.group(2)
        if key == "mx":
            if _MX_PATTERN.fullmatch(value):
                mx.append(value.lower())
            else:
                errors.append(_invalid(f"policy line {number}: mx {value!r} is not a host name or *.pattern"))
        elif key in ("version", "mode", "max_age"):
            first.setdefault(key, value)  # the first of a repeated key wins
        elif not _EXT_VALUE.fullmatch(value):
            errors.append(_invalid(f"policy line {number}: value of {key!r} has characters outside VCHAR/SP"))
    version, mode, max_age_text = first.get("version"), first.get("mode"), first.get("max_age")
    if version is None:
        errors.append(_invalid("policy has no version field"))
    elif version != "STSv1":
        errors.append(_invalid(f"policy version {version!r} is not STSv1"))
    if mode is None:
        errors.append(_invalid("policy has no mode field"))
    elif mode not in MODES:
        errors.append(_invalid(f"policy mode {mode!r} is not enforce, testing or none"))
    max_age = -1
    if max_age_text is None:
        errors.append(_invalid("policy has no max_age field"))
    elif not _MAX_AGE.fullmatch(max_age_text) or int(max_age_text) > MAX_AGE_LIMIT:
        errors.append(_invalid(f"policy max_age {max_age_text!r} is not an integer 0-{MAX_AGE_LIMIT}"))
    else:
        max_age = int(max_age_text)
    if not mx and mode in ("enforce", "testing"):
        errors.append(_invalid(f"policy in mode {mode} has no mx field"))
    if errors or version is None or mode is None:
        return None, errors
    return MtaStsPolicy(version=version, mode=mode, mx=tuple(mx), max_age=max_age), []


# --- §4.1 matching ------------------------------------------------------------------------------


def mx_pattern_matches(pattern: str, host: str) -> bool:
    """Does an `mx` pattern cover `host`? `*.example.com` matches exactly one label before example.com."""
    return wildcard_matches(pattern, host)


def policy_matches(policy: MtaStsPolicy, host: str) -> bool:
    return any(mx_pattern_matches(p, host) for p in policy.mx)


# --- §3.3 the fetch (https.py) and all of it for one domain ---------------------------------


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The verifying client context for policy hosts (one per trust store; contexts are thread-safe)."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def check_mta_sts(
    domain: str,
    *,
    resolver: dns.resolver.Resolver,
    timeout: float,
    ca_file: str | None = None,
    port: int = 443,
    trust: TrustStore | None = None,
) -> MtaStsFacts:
    """`observe_mta_sts` for a caller without an event loop."""
    tls = trust.https_context() if trust is not None else tls_context(ca_file)
    return aio.run(observe_mta_sts(domain, resolver=resolver, timeout=timeout, tls=tls, port=port))


def discovery_questions(domain: str) -> list[tuple[str, str]]:
    """The `_mta-sts` TXT record, and beside it the policy host's addresses: one round trip less;
    the addresses are dropped when there is no policy to fetch, and nothing is ever connected to
    before the TXT record says so (RFC 8461 §3.3)."""
    host = f"mta-sts.{domain}"
    return [(sts_name(domain), "TXT"), (host, "A"), (host, "AAAA")]


async def observe_mta_sts(
    domain: str,
    *,
    resolver: dns.resolver.Resolver,
    timeout: float,
    tls: ssl.SSLContext,
    port: int = 443,
    asked: Awaitable[Sequence[pdns.Lookup]] | None = None,
) -> MtaStsFacts:
    """Discovery, fetch and parse for `domain`; every name is resolved through `resolver`.
    `asked`: the answers to `discovery_questions(domain)` when the caller asked them beside its own."""
    host = f"mta-sts.{domain}"
    txt, *addressed = await (asked or adns.ask(resolver, discovery_questions(domain)))
    found = judge_discovery(sts_name(domain), txt)
    if found.status != "found":
        return MtaStsFacts(status=MtaStsStatus(found.status), record=found.record, errors=found.errors)
    addresses, dns_errors = pdns.addresses_of(addressed)
    if addresses:
        fetched = await https.fetch_policy(host, addresses, port=port, tls=tls, timeout=timeout)
    else:
        why = "; ".join(e.detail for e in dns_errors) or f"{host}: no A or AAAA records"
        detail = f"{https.policy_url(host, port)}: cannot resolve: {why}"
        fetched = https.Fetch("error", None, (ProbeError("sts-policy-fetch-error", detail),))
    if fetched.text is None:
        return MtaStsFacts(
            status=MtaStsStatus(fetched.status), record=found.record, id=found.id, errors=fetched.errors
        )
    policy, errors = parse_policy(fetched.text)
    if policy is None:
        return MtaStsFacts(
            status=MtaStsStatus.INVALID, record=found.record, id=found.id, errors=tuple(errors)
        )
    return MtaStsFacts(status=MtaStsStatus.VALID, record=found.record, id=found.id, policy=policy)
