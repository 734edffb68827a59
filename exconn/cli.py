"""The command line: a thin layer over functions a script can call.

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or input error. Nothing that a user
can cause ends in a traceback: every error is one line naming what went wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import cast

from exconn._version import __version__
from exconn.arg_cli import path_argument
from exconn.audit import AuditOptions, LiveSource, Observation, check, run
from exconn.errors import ExconnError
from exconn.evidence.evidence_cli import add_evidence_parser
from exconn.posture.cli import add_posture_parser, run_posture
from exconn.render import Format, rules_markdown
from exconn.rules.base import Severity, all_rules
from exconn.sources.psrp_cli import add_collect_parser, add_connection_options

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its one-line message, drop the usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _format(text: str) -> Format:
    """`--format`, case-insensitive like --fail-on; an unknown one is named with the choices."""
    try:
        return Format(text.strip().lower())
    except ValueError:
        choices = ", ".join(Format)
        raise argparse.ArgumentTypeError(f"unknown format {text!r} (one of: {choices})") from None


def _add_audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="audit connectors from Export-Clixml files (or a live server) and propose fixes",
        description="Read Exchange exports (files or folders), evaluate every rule, print the findings.",
    )
    p.add_argument(
        "paths", nargs="*", type=path_argument, metavar="PATH", help="Export-Clixml files or snapshot folders"
    )
    p.add_argument("--offline", action="store_true", help="promise no network use at all")
    p.add_argument("--format", type=_format, choices=list(Format), default=Format.TABLE)
    p.add_argument(
        "-o", "--output", type=path_argument, metavar="FILE", help="write the report here instead of stdout"
    )
    p.add_argument(
        "--fail-on",
        type=_severity,
        default=Severity.HIGH,
        metavar="SEVERITY",
        help="exit 1 when a finding reaches this severity (critical|high|medium|low|info; default high)",
    )
    p.add_argument(
        "--fix-out", type=path_argument, metavar="DIR", help="write remediation.ps1 and rollback.ps1 here"
    )
    p.add_argument(
        "--posture",
        type=path_argument,
        metavar="FILE",
        help="replay a posture saved by `exconn posture --save`",
    )
    p.add_argument(
        "--baseline",
        type=path_argument,
        metavar="OLD.json",
        help="write only what changed since that audit (new, resolved, changed findings); "
        "only new findings decide the exit status",
    )
    p.add_argument(
        "--evidence",
        type=path_argument,
        action="append",
        default=[],
        metavar="FILE",
        help="replay aggregates saved by `exconn evidence --save` (repeatable); logs and reports "
        "given as PATHs are read directly",
    )
    _add_live_options(p)
    _add_network_options(p)
    p.set_defaults(func=run_audit)


# Options that make the audit observe the network; none of them may go with --offline or --posture.
_NETWORK_OPTIONS = ("domains", "partners", "resolver", "ca_file", "timeout", "smtp_port", "https_port")


def _add_network_options(p: argparse.ArgumentParser) -> None:
    """The cross-check's options; --resolver, --ca-file and --timeout mean what they mean for `posture`."""
    g = p.add_argument_group(
        "cross-check with the domains' posture (without --offline and --posture)",
    )
    g.add_argument(
        "--domains",
        type=path_argument,
        metavar="FILE",
        help="observe only these accepted domains (one a line)",
    )
    g.add_argument(
        "--partners", type=path_argument, metavar="FILE", help="more partner domains to observe (one a line)"
    )
    g.add_argument(
        "--top-partners",
        type=int,
        default=50,
        metavar="N",
        help="without --partners: observe the N top recipient domains of the tracking logs (default 50)",
    )
    g.add_argument("--resolver", metavar="ADDR[:PORT]", help="send every DNS query to this server only")
    g.add_argument(
        "--ca-file",
        type=path_argument,
        metavar="PEM",
        help="trust store for HTTPS and SMTP (default: system)",
    )
    g.add_argument("--timeout", type=float, metavar="S", help="per lookup/fetch/probe (default 10)")
    g.add_argument("--tlsrpt-rua", metavar="URI", help="rua of the _smtp._tls record --fix-out writes")
    g.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    g.add_argument("--https-port", type=int, help=argparse.SUPPRESS)


def _add_live_options(p: argparse.ArgumentParser) -> None:
    add_connection_options(p, required=False, prefixed=True)


def _audit_options(args: argparse.Namespace) -> AuditOptions:
    live = None
    if args.server:
        from exconn.sources.psrp_cli import connection_options

        live = LiveSource(tuple(dict.fromkeys(args.server)), connection_options(args))
    return AuditOptions(
        paths=tuple(args.paths),
        live=live,
        offline=args.offline,
        posture_file=args.posture,
        observation=Observation(
            **{name: getattr(args, name) for name in _NETWORK_OPTIONS if name not in ("domains", "partners")},
            domains_file=args.domains,
            partners_file=args.partners,
        ),
        format=args.format,
        output=args.output,
        fail_on=args.fail_on,
        fix_out=args.fix_out,
        tlsrpt_rua=args.tlsrpt_rua,
        baseline=args.baseline,
        evidence_files=tuple(args.evidence),
        top_partners=args.top_partners,
    )


def run_audit(args: argparse.Namespace) -> int:
    options = _audit_options(args)
    check(options)  # before a password prompt or a connection
    result = run(options, warn=_warn)
    for note in result.notes:
        print(f"exconn: {note}", file=sys.stderr)
    return result.exit_code


def _warn(text: str) -> None:
    print(f"exconn: warning: {text}", file=sys.stderr)


def run_rules(args: argparse.Namespace) -> int:
    rules = all_rules()
    if args.format == "markdown":
        sys.stdout.write(rules_markdown(rules))
    elif args.format == "json":
        doc = [
            {
                "id": r.id,
                "title": r.title,
                "severity": r.severity.label,
                "rationale": r.rationale,
                "references": list(r.references),
                "remediation": r.remediation,
                "needs_posture": r.needs_posture,
            }
            for r in rules
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        from tabulate import tabulate

        rows = [[r.id, r.severity.label, r.title] for r in rules]
        sys.stdout.write(tabulate(rows, headers=["Rule", "Severity", "Title"]) + "\n")
    return EXIT_OK


def _add_diff_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diff",
        help="what changed between two audits (two JSON reports): new, resolved, changed findings",
        description="Compare two `exconn audit --format json` reports. Exit 1 only when a NEW finding "
        "reaches --fail-on.",
    )
    p.add_argument("old", type=path_argument, metavar="OLD.json")
    p.add_argument("new", type=path_argument, metavar="NEW.json")
    p.add_argument(
        "--format", type=_format, choices=[Format.TABLE, Format.JSON, Format.MARKDOWN], default=Format.TABLE
    )
    p.add_argument("-o", "--output", type=path_argument, metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--fail-on",
        type=_severity,
        default=Severity.HIGH,
        metavar="SEVERITY",
        help="exit 1 when a new finding reaches this severity (default high)",
    )
    p.set_defaults(func=run_diff)


def run_diff(args: argparse.Namespace) -> int:
    from exconn.diff import run

    return run(args.old, args.new, fmt=args.format, fail_on=args.fail_on, output=args.output)


def build_parser() -> _Parser:
    parser = _Parser(
        prog="exconn",
        description="Is mail between your Exchange servers and the internet really protected by TLS?",
    )
    parser.add_argument("--version", action="version", version=f"exconn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    # Sub-commands are _Parser too (one-line usage errors); typed as the base class the option
    # helpers of the posture and PSRP modules take.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser),
    )
    _add_audit_parser(sub)
    r = sub.add_parser("rules", help="list the rules (markdown: the generated rule reference)")
    r.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    r.set_defaults(func=run_rules)
    add_posture_parser(sub).set_defaults(func=run_posture)
    add_collect_parser(sub)
    _add_diff_parser(sub)
    add_evidence_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # A library's warning (a deprecation, a lax certificate encoding) is not the user's to act
        # on and would break the one-line contract of stderr; what matters is a note in the report.
        warnings.simplefilter("ignore")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except ExconnError as exc:
        print(f"exconn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("exconn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `exconn audit ... | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"exconn: internal error: {type(exc).__name__}: {exc} (run with --debug and report it)",
            file=sys.stderr,
        )
        return EXIT_USAGE
