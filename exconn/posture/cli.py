"""`exconn posture`: observe the mail posture of domains, or replay a saved observation.

    exconn posture DOMAIN... [--domains-file FILE] [--format table|json] [--resolver ADDR[:PORT]]
                   [--ca-file PEM] [--timeout S] [--concurrency N] [--no-smtp] [--save FILE]
                   [--fail-on COND[,COND...]]
    exconn posture --load FILE [--format ...] [--fail-on ...]

Exit status: 0 the run completed (whatever the domains' states), 1 `--fail-on` given and a domain fails
it, 2 usage or input errors (one line on stderr, never a traceback), or nothing was observed at all
(the resolver gave no public view of any domain asked: the report is still printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from exconn.arg_cli import path_argument
from exconn.errors import ExconnError, UsageError
from exconn.names import is_dns_name, normalize, to_a_labels, why_not_dns_name
from exconn.output import (
    DOMAIN_LIST_LIMIT,
    decode_text,
    read_small_file,
    write_file,
)
from exconn.posture.options import DEFAULT_TIMEOUT, NetworkOptions

# The scanner (dnspython, httpx, cryptography) and tabulate are imported when `posture` runs:
# every other command builds this parser too, and an offline audit must not pay for them.
if TYPE_CHECKING:
    from exconn.posture.facts import DomainPosture, PostureReport

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

FAIL_ON = {
    "error": "a lookup, fetch or probe could not be completed",
    "no-mta-sts": "no valid MTA-STS policy",
    "mta-sts-not-enforce": "no valid MTA-STS policy in mode enforce",
    "no-tlsrpt": "no valid TLS-RPT record",
    "no-dane": "DANE not valid for every MX",
    "no-starttls": "an MX does not offer or complete STARTTLS",
    "bad-certificate": "an MX certificate is untrusted, expired or for another name",
    "tls-required": "an MX refuses plaintext mail (RFC 3207 §4: a public MX must not)",
    "policy-mismatch": "an MX is not covered by the MTA-STS policy's mx patterns",
}


def add_posture_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register `posture` on the main CLI's subparsers; the lead dispatches to `run_posture`."""
    parser = subparsers.add_parser(
        "posture",
        help="observe MX, MTA-STS, TLS-RPT, DANE and SMTP STARTTLS of mail domains",
        description="Observe the mail transport security posture of domains (RFC 8461, 8460, 7672, 3207).",
    )
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domains", nargs="*", metavar="DOMAIN", help="domains to observe")
    parser.add_argument(
        "--domains-file", type=path_argument, metavar="FILE", help="more domains, one a line (# comments)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("--resolver", metavar="ADDR[:PORT]", help="send every DNS query to this server only")
    parser.add_argument(
        "--ca-file",
        type=path_argument,
        metavar="PEM",
        help="trust store for HTTPS and SMTP (default: system)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S", help="per lookup/fetch/probe"
    )
    # None: scan.DEFAULT_CONCURRENCY, read when the scan runs (importing it here costs every command).
    parser.add_argument("--concurrency", type=int, metavar="N")
    parser.add_argument("--no-smtp", action="store_true", help="do not connect to the MX hosts")
    parser.add_argument(
        "--save", type=path_argument, metavar="FILE", help="write the observation (versioned JSON) to FILE"
    )
    parser.add_argument(
        "--load", type=path_argument, metavar="FILE", help="replay a saved observation instead of observing"
    )
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="COND[,COND]",
        help="exit 1 when a domain meets a condition: " + ", ".join(FAIL_ON),
    )
    parser.add_argument("--smtp-port", type=int, default=25, help=argparse.SUPPRESS)
    parser.add_argument("--https-port", type=int, default=443, help=argparse.SUPPRESS)


# --- input --------------------------------------------------------------------------------------


def read_domains(args: argparse.Namespace) -> list[str]:
    domains = list(args.domains)
    if args.domains_file:
        try:
            text = decode_text(read_small_file(args.domains_file, DOMAIN_LIST_LIMIT))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read domains file {args.domains_file}: {_reason(exc)}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                domains.append(line)
    domains = [to_a_labels(d) for d in domains]
    bad = [d for d in domains if not is_dns_name(d)]
    if bad:
        shown = bad[0] if len(bad[0]) <= 80 else bad[0][:80] + "..."
        raise UsageError(f"not a domain name: {shown!r} ({why_not_dns_name(bad[0])})")
    return list(dict.fromkeys(normalize(d) for d in domains))


def parse_fail_on(values: Sequence[str]) -> list[str]:
    conditions: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item not in FAIL_ON:
                raise UsageError(f"unknown --fail-on condition {item!r} (choose from {', '.join(FAIL_ON)})")
            conditions.append(item)
    return conditions


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# --- verdicts -----------------------------------------------------------------------------------


def failed_conditions(posture: DomainPosture, conditions: Sequence[str]) -> list[str]:
    """Which of `conditions` this domain meets (the `--fail-on` judgement)."""
    met: list[str] = []
    probed = [h for h in posture.mx_hosts if h.probe != "skipped"]
    for condition in conditions:
        if condition == "error":
            hit = (
                "error"
                in (posture.mx.status, posture.mta_sts.status, posture.tlsrpt.status, posture.dane.status)
                or any(h.probe == "error" for h in posture.mx_hosts)
                or bool(posture.errors)
            )
        elif condition == "no-mta-sts":
            hit = posture.mta_sts.status != "valid"
        elif condition == "mta-sts-not-enforce":
            policy = posture.mta_sts.policy
            hit = posture.mta_sts.status != "valid" or policy is None or policy.mode != "enforce"
        elif condition == "no-tlsrpt":
            hit = posture.tlsrpt.status != "valid"
        elif condition == "no-dane":
            hit = posture.dane.status != "valid"
        elif condition == "no-starttls":
            hit = any(h.starttls is False or h.tls_established is False for h in probed)
        elif condition == "bad-certificate":
            hit = any(
                h.certificate is not None
                and not (h.certificate.trusted and h.certificate.name_matches and not h.certificate.expired)
                for h in probed
            )
        elif condition == "tls-required":
            hit = any(h.plaintext_mail == "tls-required" for h in probed)
        else:  # policy-mismatch
            hit = any(h.policy_match is False for h in posture.mx_hosts)
        if hit:
            met.append(condition)
    return met


# --- output -------------------------------------------------------------------------------------


def _mx_cell(posture: DomainPosture) -> str:
    mx = posture.mx
    if mx.status in ("ok", "implicit"):
        text = ", ".join(mx.hosts[:2]) + (f" +{len(mx.hosts) - 2}" if len(mx.hosts) > 2 else "")
        return f"{text} (implicit)" if mx.status == "implicit" else text
    return {"null": "null MX", "none": "none", "nxdomain": "NXDOMAIN"}.get(mx.status, mx.status)


def _sts_cell(posture: DomainPosture) -> str:
    sts = posture.mta_sts
    if sts.status == "valid" and sts.policy is not None:
        return f"{sts.policy.mode} ({len(sts.policy.mx)} mx)"
    return sts.status


def _tls_cell(posture: DomainPosture) -> str:
    probed = [h for h in posture.mx_hosts if h.probe != "skipped"]
    if not posture.mx_hosts:
        return "-"
    if not probed:
        return "not probed"
    good = sum(
        1
        for h in probed
        if h.tls_established
        and h.certificate is not None
        and h.certificate.trusted
        and h.certificate.name_matches
        and not h.certificate.expired
    )
    return f"{good}/{len(probed)} ok"


def _problems(posture: DomainPosture) -> str:
    types: list[str] = []
    for errors in (
        posture.errors,
        posture.mx.errors,
        posture.mta_sts.errors,
        posture.tlsrpt.errors,
        *(h.errors for h in posture.dane.hosts),
        *(h.errors for h in posture.mx_hosts),
    ):
        types.extend(e.type for e in errors)
    unique = list(dict.fromkeys(types))
    return ", ".join(unique[:4]) + (f" +{len(unique) - 4}" if len(unique) > 4 else "")


def render_table(report: PostureReport) -> str:
    from tabulate import tabulate

    rows = [
        [
            d.domain,
            _mx_cell(d),
            _sts_cell(d),
            d.tlsrpt.status,
            d.dane.status,
            _tls_cell(d),
            _problems(d),
        ]
        for d in report.domains
    ]
    headers = ["domain", "MX", "MTA-STS", "TLS-RPT", "DANE", "STARTTLS", "problems"]
    return tabulate(rows, headers=headers, tablefmt="simple") + f"\n\nobserved at {report.observed_at}"


def render_json(report: PostureReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False)


class _Progress:
    """`[####....] 12/100` on stderr, only when it is a terminal."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.lock = threading.Lock()

    def __call__(self, _posture: DomainPosture) -> None:
        with self.lock:
            self.done += 1
            filled = int(30 * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


# --- the command --------------------------------------------------------------------------------


def network_options(args: argparse.Namespace) -> NetworkOptions:
    """--resolver, --ca-file, --timeout and the hidden test ports; `audit` leaves unset ones None."""
    return NetworkOptions.checked(
        resolver_address=args.resolver,
        ca_file=args.ca_file,
        timeout=args.timeout,
        smtp_port=args.smtp_port,
        https_port=args.https_port,
    )


def run_posture(args: argparse.Namespace) -> int:
    """Run `exconn posture` for parsed `args`; returns the exit status."""
    try:
        return _run(args)
    except ExconnError as exc:
        print(f"exconn posture: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from exconn.posture.dns import describe_resolver
    from exconn.posture.saved import load_report
    from exconn.posture.scan import DEFAULT_CONCURRENCY, scan_domains
    from exconn.posture.view import judge_view, observation_failed

    conditions = parse_fail_on(args.fail_on)
    if args.load:
        if args.domains or args.domains_file:
            raise UsageError("--load replays a saved observation; give no domains with it")
        report = load_report(args.load)
    else:
        domains = read_domains(args)
        if not domains:
            raise UsageError("no domains given (DOMAIN... or --domains-file FILE, or --load FILE)")
        options = network_options(args)
        concurrency = DEFAULT_CONCURRENCY if args.concurrency is None else args.concurrency
        if concurrency < 1:
            raise UsageError(f"--concurrency must be 1 or more, not {concurrency}")
        resolver = options.resolver()
        progress = _Progress(len(domains), sys.stderr) if sys.stderr.isatty() else None
        report = scan_domains(
            domains,
            resolver=resolver,
            options=options.scan_options(smtp=not args.no_smtp),
            concurrency=concurrency,
            progress=progress,
        )
    nothing_observed = False
    if not args.load:
        # Marked before --save, so a replay of this observation knows it too.
        view = judge_view(report, resolver=describe_resolver(resolver))
        report, nothing_observed = view.report, view.nothing_observed
        if view.message is not None:
            print(f"exconn posture: error: {view.message}", file=sys.stderr)
    else:
        nothing_observed = bool(report.domains) and all(observation_failed(d) for d in report.domains)
    as_json = render_json(report) if args.save or args.format == "json" else ""
    if args.save:
        try:
            write_file(args.save, (as_json + "\n").encode("utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot write {args.save}: {_reason(exc)}") from None
    print(as_json if args.format == "json" else render_table(report))
    failing = {d.domain: failed_conditions(d, conditions) for d in report.domains}
    failing = {domain: met for domain, met in failing.items() if met}
    for domain, met in failing.items():
        print(f"exconn posture: {domain} fails {', '.join(met)}", file=sys.stderr)
    if nothing_observed:
        return EXIT_USAGE  # the observation itself failed: no verdict on any domain
    return EXIT_FAIL if failing else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exconn posture")
    configure_parser(parser)
    return run_posture(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
