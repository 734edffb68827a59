"""`exconn evidence`: read protocol logs, tracking logs, TLS-RPT reports and policy-host access logs,
and summarise what really happened on the wire.

    exconn evidence PATH... [--format table|json|markdown] [--since DATE] [--save FILE]
                    [--workers N] [--scheduler ADDRESS]

Exit status: 0 read (files exconn could not read are named on stderr, one line each, and skipped),
2 usage errors, a path that does not exist, or no readable evidence at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from exconn.arg_cli import path_argument
from exconn.errors import ExconnError, UsageError, display_path
from exconn.evidence.model import Evidence
from exconn.evidence.reduce import SKIPPED, reduce_paths
from exconn.evidence.report import summary_text, to_json
from exconn.evidence.saved import dumps
from exconn.output import write_file

EXIT_OK, EXIT_USAGE = 0, 2


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def add_evidence_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evidence",
        help="summarise protocol/tracking logs, TLS-RPT reports and MTA-STS policy fetches",
        description="Read Exchange SMTP protocol logs, message tracking logs, TLS-RPT reports and "
        "access logs of the MTA-STS policy host (files, folders, .gz, .zip; recognised by content) "
        "and summarise what happened on the wire.",
    )
    p.add_argument("paths", nargs="+", type=path_argument, metavar="PATH", help="files or folders")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    p.add_argument("--since", type=_date, metavar="DATE", help="only sessions and reports from this day on")
    p.add_argument(
        "--save", type=path_argument, metavar="FILE", help="write the aggregates (exconn-evidence format)"
    )
    p.add_argument("--workers", type=int, metavar="N", help="processes reading files (default: cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="reduce on this Dask cluster (exconn[dask])")
    p.set_defaults(func=run_evidence)
    return p


def collect(args: argparse.Namespace) -> Evidence:
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.scheduler:
        from exconn.evidence.distributed import dask_mapper

        return reduce_paths(args.paths, args.since, mapper=dask_mapper(args.scheduler))
    return reduce_paths(args.paths, args.since, workers=args.workers)


def run_evidence(args: argparse.Namespace) -> int:
    ev = collect(args)
    unknown = [n for n in ev.notes if n.endswith(SKIPPED)]
    for note in ev.notes:
        if not note.endswith(SKIPPED):
            print(f"exconn: warning: {note}", file=sys.stderr)
    if unknown:
        # A folder of logs often holds other files too: one line for all of them, not one each.
        print(
            f"exconn: {len(unknown)} file(s) are not logs or reports exconn reads, skipped", file=sys.stderr
        )
    if not (ev.traffic or ev.tls_reports or ev.policy_fetches or ev.recipients or ev.coverage.files):
        print("exconn: error: no readable logs or reports under the paths given", file=sys.stderr)
        return EXIT_USAGE
    if args.save:
        try:
            write_file(args.save, dumps(ev))
        except OSError as exc:
            raise ExconnError(f"{display_path(args.save)}: {exc.strerror or exc}") from None
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(ev), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(summary_text(ev, markdown=args.format == "markdown"))
    return EXIT_OK
