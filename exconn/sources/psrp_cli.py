"""`exconn collect` and the connection options shared with `exconn audit --server`.

The password is read from an environment variable (`--password-env VAR`) or, only when stdin is a
terminal, from an interactive prompt; there is deliberately no option that takes it as an argument
(it would show in the shell history and the process list).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from exconn.arg_cli import path_argument
from exconn.errors import UsageError

# The session and collection code (lxml, ssl, the converter) is imported when a command connects:
# every command builds these options, and an offline audit must not pay for it.
if TYPE_CHECKING:
    from exconn.sources.psrp import Collection
    from exconn.sources.psrp_session import ConnectionOptions

# The same tuple as exconn.sources.psrp_session.AUTH_CHOICES (a test keeps them equal).
AUTH_CHOICES = ("negotiate", "kerberos", "ntlm", "basic", "certificate", "credssp")

NEEDS_PASSWORD = ("basic", "ntlm", "credssp")


def add_connection_options(
    parser: argparse.ArgumentParser, *, required: bool = True, prefixed: bool = False
) -> None:
    """The options that say how to reach Exchange's `/PowerShell` endpoint.

    `prefixed` (for `audit`): the trust store and timeout become --server-ca-file/--server-timeout,
    because `audit`'s own --ca-file/--timeout are those of the domain observation, and an internal
    CA trusted for WinRM must not become the only CA trusted for public MX hosts.
    """
    ca_flag, timeout_flag = (
        ("--server-ca-file", "--server-timeout") if prefixed else ("--ca-file", "--timeout")
    )
    parser.set_defaults(server_ca_file_flag=ca_flag, server_timeout_flag=timeout_flag)
    group = parser.add_argument_group("live connection (Exchange remote PowerShell)")
    group.add_argument(
        "--server",
        action="append",
        metavar="HOST[:PORT]",
        required=required,
        help=(
            "Exchange server to collect from (repeatable; use the FQDN, as Kerberos and -Server need it); "
            "a port here overrides --port for this server ([ADDRESS]:PORT for IPv6)"
        ),
    )
    group.add_argument(
        "--auth",
        choices=AUTH_CHOICES,
        default="negotiate",
        help="authentication (default negotiate: Kerberos if available, else NTLM)",
    )
    group.add_argument("--username", metavar="USER", help="DOMAIN\\user or user@domain (UPN for Kerberos)")
    group.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the password from this environment variable (else prompt, if stdin is a terminal)",
    )
    group.add_argument(
        "--ssl",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="HTTPS (port 443) instead of HTTP (port 80, where the session is encrypted by NTLM/Kerberos)",
    )
    group.add_argument(
        "--port",
        type=int,
        metavar="N",
        help="port of servers given without one (default 443 with --ssl, else 80)",
    )
    group.add_argument(
        "--path", default="PowerShell", metavar="PATH", help="endpoint path (default PowerShell)"
    )
    group.add_argument(
        ca_flag,
        dest="server_ca_file",
        type=path_argument,
        metavar="PEM",
        help="trust this CA (PEM) for the server's HTTPS certificate",
    )
    group.add_argument(
        "--no-cert-validation",
        action="store_true",
        help="do not validate the HTTPS certificate (labs only: anyone in the path can read the session)",
    )
    group.add_argument(
        timeout_flag,
        dest="server_timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds per request (default 30)",
    )
    group.add_argument(
        "--cert-pem", type=path_argument, metavar="PEM", help="client certificate for --auth certificate"
    )
    group.add_argument(
        "--cert-key", type=path_argument, metavar="PEM", help="client certificate key for --auth certificate"
    )


def add_collect_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="collect a snapshot from Exchange servers over remote PowerShell",
        description=(
            "Run the export script's read-only cmdlets on Exchange's /PowerShell endpoint and save the "
            "same snapshot folder (one CLIXML file per cmdlet and manifest.json); `exconn audit DIR` "
            "then gives the same result as a live run."
        ),
    )
    add_connection_options(parser, required=True)
    parser.add_argument(
        "--out", required=True, type=path_argument, metavar="DIR", help="snapshot folder to write"
    )
    parser.set_defaults(func=run_collect)


def connection_options(args: argparse.Namespace) -> ConnectionOptions:
    """Options from the command line; the password from the environment or a prompt."""
    from exconn.sources.psrp_session import ConnectionOptions, check_options, parse_server

    servers = [parse_server(text) for text in args.server or ()]  # a bad one: UsageError, first
    ca_flag = args.server_ca_file_flag
    if args.server_ca_file and args.no_cert_validation:
        raise UsageError(f"{ca_flag} and --no-cert-validation contradict each other")
    if (args.server_ca_file or args.no_cert_validation) and not args.ssl:
        raise UsageError(f"{ca_flag} and --no-cert-validation only apply with --ssl")
    password: str | None = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise UsageError(f"environment variable {args.password_env} is not set")
    elif args.username and (args.auth in NEEDS_PASSWORD or args.auth == "negotiate"):
        if sys.stdin is not None and sys.stdin.isatty():
            password = getpass.getpass(f"Password for {args.username}: ")
        elif args.auth in NEEDS_PASSWORD:
            raise UsageError(
                f"{args.auth} needs a password: set --password-env VAR (stdin is not a terminal to prompt on)"
            )
    options = ConnectionOptions(
        auth=args.auth,
        username=args.username,
        password=password,
        ssl=bool(args.ssl),
        port=args.port,
        path=args.path,
        ca_file=args.server_ca_file,
        cert_validation=not args.no_cert_validation,
        timeout=args.server_timeout,
        cert_pem=args.cert_pem,
        cert_key_pem=args.cert_key,
        ca_file_flag=ca_flag,
        timeout_flag=args.server_timeout_flag,
    )
    check_options(options, servers[0] if servers else "")
    return options


def _collect(args: argparse.Namespace) -> Collection:
    from exconn.sources.psrp import run_collection

    options = connection_options(args)
    return run_collection(list(dict.fromkeys(args.server)), options, warn=_warn)


def _warn(text: str) -> None:
    print(f"exconn: warning: {text}", file=sys.stderr)


def run_collect(args: argparse.Namespace) -> int:
    """`exconn collect`: write the snapshot folder; 0 even when a cmdlet failed (see manifest)."""
    from exconn.sources.psrp_adapt import save_snapshot

    collection = _collect(args)
    out = Path(args.out)
    manifest = save_snapshot(collection, out)
    objects = sum(entry["count"] for entry in manifest["commands"] if entry["file"])
    failed = sum(1 for entry in manifest["commands"] if entry["errors"])
    print(
        f"exconn: wrote {objects} objects from {len(collection.hosts)} server(s) to {out}"
        + (f" ({failed} cmdlet(s) reported errors, listed in manifest.json)" if failed else ""),
        file=sys.stderr,
    )
    return 0
