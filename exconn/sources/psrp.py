"""Live collection from Exchange servers: which cmdlets run where, on every server in parallel.

exconn runs the same read-only cmdlets as `scripts/Export-ExconnSnapshot.ps1`, over pypsrp
(`psrp_session`), and either converts the results into the model or saves them as a snapshot
folder with the export script's shape and manifest (`psrp_adapt`).

    options = ConnectionOptions(auth="ntlm", username="CONTOSO\\\\admin", password=secret)
    collection = collect(["ex01.contoso.com", "ex02.contoso.com:8080"], options)
    organization = to_organization(collection)
    save_snapshot(collection, Path("snapshot"))

Each server is `HOST[:PORT]` (`[IPv6]:PORT`); one without its own port uses `options.port`.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from exconn.sources.psrp_session import (
    CmdletRun,
    ConnectionFailed,
    ConnectionOptions,
    Server,
    Session,
    as_server,
    check_options,
    open_session,
)

# Organisation-wide cmdlets run once; per-server cmdlets once per `--server`.
ORG_CMDLETS: tuple[str, ...] = (
    "Get-ExchangeServer",
    "Get-OrganizationConfig",  # for the manifest's organisation name only (no file, like the script)
    "Get-SendConnector",
    "Get-AcceptedDomain",
    "Get-TransportConfig",
)
SERVER_CMDLETS: tuple[str, ...] = ("Get-ReceiveConnector", "Get-ExchangeCertificate")

# --- collecting from several servers -----------------------------------------------------------


@dataclass
class Collection:
    """Everything one `collect` run gathered, in the order the export script writes it.

    `hosts` and the keys of `runspace_ids` are the servers' labels (`HOST`, or `HOST:PORT` for a
    server given with its own port), as each run's `host` names them.
    """

    hosts: tuple[str, ...]
    runs: list[CmdletRun]
    started: dt.datetime
    runspace_ids: dict[str, uuid.UUID]
    endpoints: tuple[str, ...] = ()


ProgressCallback = Callable[[str, str], None]  # (host, cmdlet) when one finishes


def collect(
    hosts: Sequence[str | Server],
    options: ConnectionOptions,
    *,
    progress: ProgressCallback | None = None,
    max_workers: int = 8,
) -> Collection:
    """Connect to every server (`HOST[:PORT]`, in parallel), then run the org-wide cmdlets once
    and the per-server ones on each server. A server that cannot be reached raises
    ConnectionFailed (nothing is half collected); a cmdlet that fails is recorded in its run's
    errors and the others go on."""
    if not hosts:
        raise ConnectionFailed("exconn", "no --server given")
    # One session per endpoint: `ex01` and `ex01:80` (the default port) are the same server.
    by_endpoint: dict[str, Server] = {}
    for server in map(as_server, hosts):
        by_endpoint.setdefault(options.endpoint(server), server)
    unique = list(by_endpoint.values())
    for server in unique:
        check_options(options, server)
    started = dt.datetime.now(dt.UTC)
    workers = max(1, min(max_workers, len(unique)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exconn-psrp") as executor:
        opened = list(executor.map(lambda s: _open_or_error(s, options), unique))
        failures = [result for result in opened if isinstance(result, ConnectionFailed)]
        sessions = [result.session for result in opened if isinstance(result, _OpenSession)]
        try:
            if failures:
                raise failures[0]
            first = sessions[0]
            servers_run = first.run("Get-ExchangeServer")
            if progress:
                progress(first.label, "Get-ExchangeServer")
            names = {s.label: _server_name(s.host, servers_run.objects) for s in sessions}

            def work(index: int, session: Session) -> list[CmdletRun]:
                runs: list[CmdletRun] = []
                if index == 0:
                    runs.append(servers_run)
                    for cmdlet in ORG_CMDLETS[1:]:
                        runs.append(session.run(cmdlet))
                        if progress:
                            progress(session.label, cmdlet)
                for cmdlet in SERVER_CMDLETS:
                    runs.append(session.run(cmdlet, {"Server": names[session.label]}))
                    if progress:
                        progress(session.label, cmdlet)
                return runs

            per_host = list(executor.map(work, range(len(sessions)), sessions))
        finally:
            for item in opened:
                if isinstance(item, _OpenSession):
                    item.close()
    runs = [run for host_runs in per_host for run in host_runs]
    return Collection(
        hosts=tuple(s.label for s in unique),
        runs=runs,
        started=started,
        runspace_ids={s.label: s.runspace_id for s in sessions},
        endpoints=tuple(options.endpoint(s) for s in unique),
    )


class _OpenSession:
    """A session opened in a worker thread and closed later (the context manager spans calls)."""

    def __init__(self, server: Server, options: ConnectionOptions) -> None:
        self._manager = open_session(server, options)
        self.session = self._manager.__enter__()

    def close(self) -> None:
        self._manager.__exit__(None, None, None)


def _open_or_error(server: Server, options: ConnectionOptions) -> _OpenSession | ConnectionFailed:
    try:
        return _OpenSession(server, options)
    except ConnectionFailed as error:
        return error


def _server_name(host: str, servers: Iterable[Any]) -> str:
    """The Exchange server `host` names (its Name or FQDN); else the host as given."""
    wanted = host.lower().rstrip(".")
    for server in servers:
        props = getattr(server, "adapted_properties", {})
        name = str(props.get("Name") or "")
        fqdn = str(props.get("Fqdn") or "")
        if name and wanted in (name.lower(), fqdn.lower().rstrip(".")):
            return name
    return host


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self.lock = threading.Lock()

    def __call__(self, host: str, cmdlet: str) -> None:
        with self.lock:
            self.done += 1
            if not self.enabled:
                return
            width = 24
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {host}: {cmdlet}".ljust(79)[:79])
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


def expected_runs(host_count: int) -> int:
    return len(ORG_CMDLETS) + len(SERVER_CMDLETS) * host_count


def run_collection(
    hosts: Sequence[str | Server], options: ConnectionOptions, *, warn: Callable[[str], None]
) -> Collection:
    """Collect from `hosts` with a progress bar on a terminal; each cmdlet's error goes to `warn`."""
    progress = Progress(expected_runs(len(hosts)))
    try:
        collection = collect(list(hosts), options, progress=progress)
    finally:
        progress.finish()
    for run in collection.runs:
        where = f" -Server {run.server}" if run.server else ""
        for error in run.errors:
            warn(f"{run.host}: {run.cmdlet}{where}: {error}")
    return collection
