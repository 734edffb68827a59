"""The DNS side of the fix: per domain of ours, the MTA-STS policy file and the TXT records to publish.

    DIR/dns/<domain>/mta-sts.txt   the policy, built from the real MX set, mode from EXC-W003/W004
    DIR/dns/<domain>/records.txt   zone-file snippet: `_mta-sts` (fresh id) and `_smtp._tls`
    DIR/dns/<domain>/README.txt    the order of publishing

The policy file uses CRLF: RFC 8461 §3.2 describes the policy as "CRLF-separated key/value pairs" and
its ABNF accepts LF or CRLF, so CRLF satisfies a parser written to either the prose or the grammar.

Every name that becomes a path or a line is checked first (LDH labels only), so a hostile accepted
domain (`../../x`) or MX name (with a newline) cannot escape DIR or inject a policy line.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from exconn import __version__
from exconn.model import Organization
from exconn.output import write_file
from exconn.posture.facts import DomainPosture, MtaStsPolicy
from exconn.posture.targets import is_domain_name
from exconn.rules.base import Context
from exconn.rules.world import ModeChoice, is_ours, mode_choice, mx_problem, proposed_policy, valid_policy

TXT_TTL = 3600
# RFC 8460 §3: mailto: or https: URIs; characters that would end the TXT string, the record's
# field (`;`) or the URI list (`,`) are refused rather than escaped: a report address needs none.
_RUA = re.compile(r"^(mailto:[^\s;,\"\\<>]+@[A-Za-z0-9.-]+|https://[^\s;,\"\\<>]+)$")


class DnsFixError(ValueError):
    """An option value that cannot be written into a record (the CLI reports it as a usage error)."""


def check_rua(uri: str) -> str:
    if not _RUA.match(uri):
        raise DnsFixError(
            f"--tlsrpt-rua {uri!r}: expected mailto:address@domain or https://... "
            "(no spaces, quotes, ';' or ',')"
        )
    return uri


@dataclass(frozen=True, slots=True)
class DnsFix:
    written: tuple[Path, ...]
    notes: tuple[str, ...]  # domains left out, and why


def policy_text(policy: MtaStsPolicy) -> bytes:
    lines = [f"version: {policy.version}", f"mode: {policy.mode}"]
    lines += [f"mx: {pattern}" for pattern in policy.mx]
    lines.append(f"max_age: {policy.max_age}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def fresh_id(generated_at: dt.datetime) -> str:
    """RFC 8461 §3.1: 1-32 alphanumerics; UTC time digits change with every run a second apart."""
    return generated_at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def _rua(p: DomainPosture, given: str | None) -> str | None:
    if given is not None:
        return given
    if p.tlsrpt.status == "valid":
        kept = [u for u in p.tlsrpt.rua if _RUA.match(u)]
        if kept:
            return ",".join(kept)
    return None


def _record_verb(p: DomainPosture) -> str:
    """What to do with the `_mta-sts` TXT record: replace the one seen, create one where none is."""
    if p.mta_sts.record is not None:
        return "replace"
    return "create" if p.mta_sts.status == "absent" else "create (or replace, if one exists)"


def records_text(p: DomainPosture, record_id: str, rua: str | None, generated_at: dt.datetime) -> str:
    d = p.domain
    if _record_verb(p) == "create":
        how = [f"; (see README.txt). CREATE the _mta-sts TXT record: {d} publishes none now."]
    else:
        how = [
            "; (see README.txt). REPLACE any existing _mta-sts TXT record: two v=STSv1 records mean",
            "; no policy at all (RFC 8461 section 3.1).",
        ]
    lines = [
        f"; exconn {__version__}: DNS records for {d}, generated {generated_at.isoformat()}",
        f"; Publish these only once https://mta-sts.{d}/.well-known/mta-sts.txt serves mta-sts.txt",
        *how,
        f'_mta-sts.{d}. {TXT_TTL} IN TXT "v=STSv1; id={record_id}"',
    ]
    if rua is not None:
        lines.append(f'_smtp._tls.{d}. {TXT_TTL} IN TXT "v=TLSRPTv1; rua={rua}"')
    else:
        lines += [
            "; TLS-RPT (RFC 8460): run again with --tlsrpt-rua mailto:you@example.com to write this record:",
            f'; _smtp._tls.{d}. {TXT_TTL} IN TXT "v=TLSRPTv1; rua=mailto:..."',
        ]
    return "\n".join(lines) + "\n"


def readme_text(
    p: DomainPosture, policy: MtaStsPolicy, record_id: str, choice: ModeChoice | None = None
) -> str:
    d = p.domain
    current = valid_policy(p)
    was = (
        f"mode {current.mode}, id {p.mta_sts.id}, max_age {current.max_age}"
        if current
        else f"no valid policy ({p.mta_sts.status})"
    )
    steps = [
        f"MTA-STS and TLS-RPT for {d}: what to publish, in this order.",
        "",
        f"Now published: {was}. Proposed: mode {policy.mode}, mx {', '.join(policy.mx)}, "
        f"max_age {policy.max_age}.",
        *([choice.why] if choice is not None else []),
        "",
        f"1. Serve mta-sts.txt (byte for byte, CRLF line ends) at https://mta-sts.{d}/.well-known/mta-sts.txt",
        f"   with HTTP 200, Content-Type text/plain, no redirect, and a certificate valid for mta-sts.{d}.",
        f"2. Check it: exconn posture {d}   (the policy must be fetched and valid before step 3).",
        f"3. Then {_record_verb(p)} the _mta-sts.{d} TXT record: the one in records.txt "
        f"(new id {record_id}).",
        "   Senders fetch a policy again only when the id changes; before the file is served, a new id",
        "   would make them fetch the old file and cache it for its max_age.",
        "4. Publish the _smtp._tls record from records.txt if it is not there yet, and read the reports.",
    ]
    if policy.mode == "testing" and current is not None and current.mode == "enforce":
        steps += [
            "",
            f"Senders keep the cached enforce policy up to {current.max_age} s unless the id changes.",
        ]
    if policy.mode == "enforce":
        steps += ["", "Enforce only after the TLS reports for mode testing have shown no failures."]
        if p.tlsrpt.status != "valid":
            steps += [
                f"No valid TLS-RPT record is published yet: publish _smtp._tls.{d} (step 4) first and keep",
                "the testing policy until its reports arrive; without TLS-RPT there are no reports.",
            ]
    return "\n".join(steps) + "\n"


def _safe_policy(policy: MtaStsPolicy) -> bool:
    return all(is_domain_name(m.removeprefix("*.")) for m in policy.mx)


def write_dns(
    org: Organization,
    posture: Mapping[str, DomainPosture],
    out_dir: Path,
    *,
    generated_at: dt.datetime,
    tlsrpt_rua: str | None = None,
) -> DnsFix:
    """Write DIR/dns/<domain>/ for each observed domain of ours whose MX set is known."""
    if tlsrpt_rua is not None:
        check_rua(tlsrpt_rua)
    written: list[Path] = []
    notes: list[str] = []
    record_id = fresh_id(generated_at)
    # The rules' own view (EXC-W002's receive connectors decide the mode too), at the same instant.
    ctx = Context(org, generated_at, posture, offline=False)
    for domain in sorted(posture):
        p = posture[domain]
        if not is_ours(org, domain):
            continue
        if not is_domain_name(domain):
            notes.append(f"{domain!r}: not a plain domain name, no DNS files written")
            continue
        if (why := mx_problem(p)) is not None:
            notes.append(f"{domain}: {why}; no DNS files written")
            continue
        choice = mode_choice(ctx, p, tlsrpt_rua=tlsrpt_rua)
        policy = proposed_policy(ctx, p, tlsrpt_rua=tlsrpt_rua)
        if not _safe_policy(policy):
            notes.append(f"{domain}: an MX host name is not a plain host name; no DNS files written")
            continue
        folder = out_dir / "dns" / domain.lower().rstrip(".")
        folder.mkdir(parents=True, exist_ok=True)
        files: Sequence[tuple[str, bytes]] = (
            ("mta-sts.txt", policy_text(policy)),
            ("records.txt", records_text(p, record_id, _rua(p, tlsrpt_rua), generated_at).encode("utf-8")),
            ("README.txt", readme_text(p, policy, record_id, choice).encode("utf-8")),
        )
        for name, data in files:
            path = folder / name
            write_file(path, data)
            written.append(path)
    return DnsFix(tuple(written), tuple(notes))
