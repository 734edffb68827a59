"""The DNS side of the fix: per domain of ours, the MTA-STS policy file and the TXT records to publish.

Reads only the report's findings: each `PublishMtaSts` fix (attached by the EXC-W rules that want the
policy published or changed) becomes one folder.

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
import errno
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exconn._version import __version__
from exconn.errors import InputError
from exconn.fix import PublishMtaSts
from exconn.names import is_domain_name, normalize
from exconn.output import write_file
from exconn.rules.base import Finding, Report

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


def policy_text(pub: PublishMtaSts) -> bytes:
    lines = ["version: STSv1", f"mode: {pub.mode}"]
    lines += [f"mx: {pattern}" for pattern in pub.mx]
    lines.append(f"max_age: {pub.max_age}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def fresh_id(generated_at: dt.datetime) -> str:
    """RFC 8461 §3.1: 1-32 alphanumerics; UTC time digits change with every run a second apart."""
    return generated_at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def _rua(pub: PublishMtaSts) -> str | None:
    if pub.tlsrpt_rua is not None:
        return pub.tlsrpt_rua  # checked by write_dns before anything is written
    kept = [u for u in pub.published_rua or () if _RUA.match(u)]
    return ",".join(kept) if kept else None


def records_text(pub: PublishMtaSts, record_id: str, rua: str | None, generated_at: dt.datetime) -> str:
    d = pub.domain
    if pub.record_verb == "create":
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


def readme_text(pub: PublishMtaSts, record_id: str) -> str:
    d = pub.domain
    was = (
        f"mode {pub.current_mode}, id {pub.current_id}, max_age {pub.current_max_age}"
        if pub.current_mode is not None
        else f"no valid policy ({pub.sts_status})"
    )
    steps = [
        f"MTA-STS and TLS-RPT for {d}: what to publish, in this order.",
        "",
        f"Now published: {was}. Proposed: mode {pub.mode}, mx {', '.join(pub.mx)}, max_age {pub.max_age}.",
        pub.why,
        "",
        f"1. Serve mta-sts.txt (byte for byte, CRLF line ends) at https://mta-sts.{d}/.well-known/mta-sts.txt",
        f"   with HTTP 200, Content-Type text/plain, no redirect, and a certificate valid for mta-sts.{d}.",
        f"2. Check it: exconn posture {d}   (the policy must be fetched and valid before step 3).",
        f"3. Then {pub.record_verb} the _mta-sts.{d} TXT record: the one in records.txt "
        f"(new id {record_id}).",
        "   Senders fetch a policy again only when the id changes; before the file is served, a new id",
        "   would make them fetch the old file and cache it for its max_age.",
        "4. Publish the _smtp._tls record from records.txt if it is not there yet, and read the reports.",
    ]
    if pub.mode == "testing" and pub.current_mode == "enforce":
        steps += [
            "",
            f"Senders keep the cached enforce policy up to {pub.current_max_age} s unless the id changes.",
        ]
    if pub.mode == "enforce":
        steps += ["", "Enforce only after the TLS reports for mode testing have shown no failures."]
        if pub.published_rua is None:
            steps += [
                f"No valid TLS-RPT record is published yet: publish _smtp._tls.{d} (step 4) first and keep",
                "the testing policy until its reports arrive; without TLS-RPT there are no reports.",
            ]
    return "\n".join(steps) + "\n"


def _safe_policy(pub: PublishMtaSts) -> bool:
    return all(is_domain_name(m.removeprefix("*.")) for m in pub.mx)


def _known_values(pub: PublishMtaSts) -> bool:
    """Mode and max_age are the rules' own values; a hand-made finding could hold anything."""
    return (
        pub.mode in ("enforce", "testing", "none")
        and type(pub.max_age) is int
        and 0 <= pub.max_age <= 31557600  # RFC 8461 §3.2: at most a year
    )


def publications(report: Report) -> tuple[list[tuple[PublishMtaSts, Finding]], list[str]]:
    """One publication per domain, from the findings (most severe first). Findings that ask for the
    same domain's policy agree by construction; if they do not, the most severe one wins, and a note
    says so (as the .ps1 writer merges commands)."""
    chosen: dict[str, tuple[PublishMtaSts, Finding]] = {}
    notes: list[str] = []
    for finding in report.findings:
        for pub in finding.dns:
            key = normalize(pub.domain)
            if key not in chosen:
                chosen[key] = (pub, finding)
            elif chosen[key][0] != pub:
                owner = chosen[key][1].rule.id
                note = (
                    f"{pub.domain}: {finding.rule.id} asks for another policy than {owner}; "
                    f"kept the one of {owner} (most severe)"
                )
                if note not in notes:
                    notes.append(note)
    return [chosen[k] for k in sorted(chosen)], notes


def write_dns(report: Report, out_dir: Path, *, generated_at: dt.datetime) -> DnsFix:
    """Write DIR/dns/<domain>/ for each domain a finding of `report` asks to publish a policy for."""
    written: list[Path] = []
    chosen, notes = publications(report)
    for pub, _ in chosen:
        if pub.tlsrpt_rua is not None:
            check_rua(pub.tlsrpt_rua)
    record_id = fresh_id(generated_at)
    for pub, _ in chosen:
        domain = pub.domain
        if not is_domain_name(domain):
            notes.append(f"{domain!r}: not a plain domain name, no DNS files written")
            continue
        if not _safe_policy(pub):
            notes.append(f"{domain}: an MX host name is not a plain host name; no DNS files written")
            continue
        if not _known_values(pub):
            notes.append(
                f"{domain}: mode {pub.mode!r} or max_age {pub.max_age!r} is not valid; no DNS files written"
            )
            continue
        folder = out_dir / "dns" / normalize(domain)
        files: Sequence[tuple[str, bytes]] = (
            ("mta-sts.txt", policy_text(pub)),
            ("records.txt", records_text(pub, record_id, _rua(pub), generated_at).encode("utf-8")),
            ("README.txt", readme_text(pub, record_id).encode("utf-8")),
        )
        try:
            _make_folder(out_dir, folder)
            for name, data in files:
                path = folder / name
                write_file(path, data)
                written.append(path)
        except OSError as exc:
            raise InputError(folder, f"cannot write the DNS files: {exc.strerror or exc}") from None
    return DnsFix(tuple(written), tuple(notes))


def _make_folder(out_dir: Path, folder: Path) -> None:
    """Create `folder` below `out_dir`, refusing a symbolic link on the way: a link planted at
    DIR/dns would put the files wherever it points."""
    out_dir.mkdir(parents=True, exist_ok=True)  # the folder the user named (--fix-out)
    current = out_dir
    for part in folder.relative_to(out_dir).parts:
        current = current / part
        if current.is_symlink():
            raise OSError(errno.ELOOP, f"{current} is a symbolic link; exconn writes no file through one")
        current.mkdir(exist_ok=True)
