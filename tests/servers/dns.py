"""Real DNS on loopback: Knot (authoritative, signing) with Unbound (validating) in front of it.

    zones = [Zone("test.", records, signed=True), Zone("insecure.test.", more, signed=False), ...]
    with DnsServers.start(tmp_path, zones) as dns_servers:
        dns_servers.resolver      # "127.0.53.2:PORT": Unbound, validating with the test. trust anchor
        dns_servers.authoritative # "127.0.53.1:PORT": Knot

Knot signs every `signed=True` zone itself (`dnssec-signing: on`, ECDSA P-256, NSEC). Once it has
signed, the DNSKEY of the first signed zone (`test.`) is read back from Knot and becomes Unbound's
trust anchor, so validation is real: a child zone without a DS in `test.` is insecure (no AD), and a
child zone whose DS in `test.` matches none of its keys is bogus (SERVFAIL, records visible with CD).
Both daemons run in the foreground as child processes from Debian's packages, on unprivileged ports,
with a temp dir of their own; `stop()` terminates them and waits.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

KNOT_BINARIES = ("knotd",)
UNBOUND_BINARIES = ("unbound",)


class ServerStartError(RuntimeError):
    pass


@dataclass
class Zone:
    origin: str  # with the trailing dot, e.g. "test."
    records: list[str] = field(default_factory=list)  # zone-file lines, relative or absolute names
    signed: bool = True


def missing_binaries() -> list[str]:
    """Server binaries this module needs that are not installed (for skip/fail decisions)."""
    names = [*KNOT_BINARIES, *UNBOUND_BINARIES]
    return [n for n in names if _which(n) is None]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def free_port(ip: str, *, udp: bool = True) -> int:
    """A port free for TCP (and UDP) on `ip`."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((ip, 0))
            port = int(tcp.getsockname()[1])
            if not udp:
                return port
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((ip, port))
            except OSError:
                continue
            return port
    raise ServerStartError(f"no free port on {ip}")


def _soa(origin: str, ns_ip: str, ttl: int) -> list[str]:
    return [
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ SOA ns.{origin} hostmaster.{origin} 1 3600 900 86400 5",
        f"@ NS ns.{origin}",
        f"ns A {ns_ip}",
    ]


class _Process:
    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ServerStartError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log_file.close()


def _query(server: str, port: int, name: str, rdtype: str, *, timeout: float = 1.0) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    return dns.query.udp(query, server, timeout=timeout, port=port)


class DnsServers:
    """Knot + Unbound, started together; see the module docstring."""

    def __init__(self, directory: Path, knot_ip: str, unbound_ip: str) -> None:
        self.directory = directory
        self.knot_ip, self.unbound_ip = knot_ip, unbound_ip
        self.knot_port = 0
        self.unbound_port = 0
        self._processes: list[_Process] = []
        self.trust_anchor: list[str] = []
        self.ttl = 30
        self.fixed_unbound_port: int | None = None
        self.allow: tuple[str, ...] = ()

    @property
    def resolver(self) -> str:
        return f"{self.unbound_ip}:{self.unbound_port}"

    @property
    def authoritative(self) -> str:
        return f"{self.knot_ip}:{self.knot_port}"

    @classmethod
    def start(
        cls,
        directory: Path,
        zones: Sequence[Zone],
        *,
        knot_ip: str = "127.0.53.1",
        unbound_ip: str = "127.0.53.2",
        startup_timeout: float = 30.0,
        ttl: int = 30,
        unbound_port: int | None = None,
        allow: Sequence[str] = (),
    ) -> DnsServers:
        """Start Knot with `zones`, then Unbound; `ttl` is the zones' TTL and Unbound's cache-max-ttl.

        `unbound_port` fixes Unbound's port (the benchmark's namespace serves clients on 53, which a
        resolv.conf cannot change); `allow` adds client networks besides 127.0.0.0/8."""
        missing = missing_binaries()
        if missing:
            raise ServerStartError(
                f"not installed: {', '.join(missing)} (run scripts/install-test-servers.sh)"
            )
        servers = cls(directory, knot_ip, unbound_ip)
        servers.ttl = ttl
        servers.fixed_unbound_port = unbound_port
        servers.allow = tuple(allow)
        try:
            servers._start_knot(zones, startup_timeout)
            servers._start_unbound(zones, startup_timeout)
        except BaseException:
            servers.stop()
            raise
        return servers

    # --- Knot -----------------------------------------------------------------------------------

    def _start_knot(self, zones: Sequence[Zone], startup_timeout: float) -> None:
        base = self.directory / "knot"
        for sub in ("zones", "db", "run"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.knot_port = free_port(self.knot_ip)
        zone_entries = []
        for zone in zones:
            name = zone.origin.rstrip(".") or "root"
            lines = _soa(zone.origin, self.knot_ip, self.ttl) + zone.records
            (base / "zones" / f"{name}.zone").write_text("\n".join(lines) + "\n")
            zone_entries.append(
                f'  - domain: "{zone.origin}"\n'
                f'    file: "{base / "zones" / name}.zone"\n'
                + ("    dnssec-signing: on\n    dnssec-policy: test\n" if zone.signed else "")
            )
        config = f"""\
server:
    rundir: "{base / "run"}"
    listen: {self.knot_ip}@{self.knot_port}
    udp-workers: 2
    tcp-workers: 2
    background-workers: 2
log:
  - target: stderr
    any: info
database:
    storage: "{base / "db"}"
control:
    listen: "{base / "run" / "knot.sock"}"
policy:
  - id: test
    algorithm: ecdsap256sha256
    nsec3: off
    rrsig-lifetime: 14d
    rrsig-refresh: 7d
template:
  - id: default
    storage: "{base / "zones"}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
{"".join(zone_entries)}"""
        conf = base / "knot.conf"
        conf.write_text(config)
        process = _Process("knotd", [_which("knotd") or "knotd", "-c", str(conf)], base / "knotd.log")
        self._processes.append(process)
        deadline = time.monotonic() + startup_timeout
        pending = [z.origin for z in zones]
        signed = {z.origin for z in zones if z.signed}
        while pending:
            process.check_alive()
            if time.monotonic() > deadline:
                raise ServerStartError(f"knotd did not serve {pending} in time:\n{process.tail()}")
            origin = pending[0]
            try:
                response = _query(
                    self.knot_ip, self.knot_port, origin, "DNSKEY" if origin in signed else "SOA"
                )
            except (OSError, dns.exception.DNSException):
                time.sleep(0.1)
                continue
            has_sigs = any(r.rdtype == dns.rdatatype.RRSIG for r in response.answer)
            if response.rcode() == 0 and response.answer and (has_sigs or origin not in signed):
                pending.pop(0)
            else:
                time.sleep(0.1)
        anchor_zone = next(z.origin for z in zones if z.signed)
        response = _query(self.knot_ip, self.knot_port, anchor_zone, "DNSKEY")
        self.trust_anchor = [
            f"{rrset.name} {rrset.ttl} IN DNSKEY {rdata.to_text()}"
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.DNSKEY
            for rdata in rrset
            if getattr(rdata, "flags", 0) == 257
        ]
        if not self.trust_anchor:
            raise ServerStartError(f"knotd published no KSK for {anchor_zone}")

    # --- Unbound --------------------------------------------------------------------------------

    def _start_unbound(self, zones: Sequence[Zone], startup_timeout: float) -> None:
        base = self.directory / "unbound"
        base.mkdir(parents=True, exist_ok=True)
        self.unbound_port = self.fixed_unbound_port or free_port(self.unbound_ip)
        anchor_file = base / "trust-anchor.txt"
        anchor_file.write_text("\n".join(self.trust_anchor) + "\n")
        stubs = "".join(
            f'stub-zone:\n    name: "{z.origin}"\n    stub-addr: {self.knot_ip}@{self.knot_port}\n'
            for z in zones
        )
        # Hermetic: names outside the test zones are refused, never sent to the internet's root servers
        # (a user-configured local-zone also replaces Unbound's default static zone for "test.").
        local_zones = '    local-zone: "." refuse\n' + "".join(
            f'    local-zone: "{z.origin}" transparent\n' for z in zones
        )
        config = f"""\
server:
    username: ""
    chroot: ""
    directory: "{base}"
    pidfile: "{base / "unbound.pid"}"
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    log-servfail: yes
    interface: {self.unbound_ip}@{self.unbound_port}
    port: {self.unbound_port}
    interface-automatic: no
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
{"".join(f"    access-control: {net} allow{chr(10)}" for net in self.allow)}    do-not-query-localhost: no
    num-threads: 2
    so-reuseport: no
    outgoing-range: 256
    num-queries-per-thread: 512
    qname-minimisation: no
    aggressive-nsec: no
    minimal-responses: no
    cache-max-ttl: {self.ttl}
    cache-max-negative-ttl: 5
    val-bogus-ttl: 5
    infra-host-ttl: 60
    module-config: "validator iterator"
    trust-anchor-file: "{anchor_file}"
    harden-dnssec-stripped: yes
{local_zones}
remote-control:
    control-enable: no

{stubs}"""
        conf = base / "unbound.conf"
        conf.write_text(config)
        process = _Process(
            "unbound", [_which("unbound") or "unbound", "-d", "-c", str(conf)], base / "unbound.log"
        )
        self._processes.append(process)
        anchor_zone = next(z.origin for z in zones if z.signed)
        deadline = time.monotonic() + startup_timeout
        while True:
            process.check_alive()
            if time.monotonic() > deadline:
                raise ServerStartError(f"unbound did not validate {anchor_zone} in time:\n{process.tail()}")
            try:
                response = _query(self.unbound_ip, self.unbound_port, anchor_zone, "SOA")
            except (OSError, dns.exception.DNSException):
                time.sleep(0.1)
                continue
            if response.rcode() == 0 and response.flags & dns.flags.AD:
                return
            if response.rcode() != 0 or response.answer:
                raise ServerStartError(
                    f"unbound answered {anchor_zone} SOA without AD (rcode {response.rcode()}):\n"
                    + process.tail()
                )
            time.sleep(0.1)

    # --- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        for process in reversed(self._processes):
            with contextlib.suppress(OSError):
                process.stop()
        self._processes.clear()

    def __enter__(self) -> DnsServers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def logs(self) -> Iterator[tuple[str, str]]:
        for process in self._processes:
            yield process.name, process.tail(200)


class SilentUdp:
    """A UDP (and TCP) port that takes DNS queries and never answers: a resolver that times out."""

    def __init__(self, ip: str = "127.0.53.3") -> None:
        self.ip = ip
        self.port = free_port(ip)
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((ip, self.port))
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((ip, self.port))
        self._tcp.listen(16)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def stop(self) -> None:
        self._udp.close()
        self._tcp.close()


class TruncatingUdp(SilentUdp):
    """Answers every UDP query at once with TC=1 and no records, then never answers over TCP: each
    lookup falls back to TCP and hangs there until the client's deadline (issue 9 §3)."""

    def __init__(self, ip: str = "127.0.53.4") -> None:
        super().__init__(ip)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self._udp.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - not DNS: ignore, as a server would
                continue
            self.respond(query, peer)

    def respond(self, query: dns.message.Message, peer: tuple[str, int]) -> None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.TC
        self.send(response, peer)

    def send(self, response: dns.message.Message, peer: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):
            self._udp.sendto(response.to_wire(), peer)


class NxdomainUdp(TruncatingUdp):
    """Answers every UDP query NXDOMAIN at once: a resolver without the public view, like an AD DNS
    server that knows only its internal zones (issue 9 §3). Its TCP port never answers."""

    def __init__(self, ip: str = "127.0.53.5") -> None:
        super().__init__(ip)

    def respond(self, query: dns.message.Message, peer: tuple[str, int]) -> None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.set_rcode(dns.rcode.NXDOMAIN)
        self.send(response, peer)


class ScriptedUdp(TruncatingUdp):
    """Answers from `records` ({(name, type): [rdata text]}), each after its `delays` seconds, and
    never answers a question it has no records for: one slow or missing answer among quick ones,
    which Unbound in front of a healthy zone cannot show. `asked` lists the questions received.
    Its TCP port never answers."""

    def __init__(
        self,
        records: dict[tuple[str, str], list[str]],
        delays: dict[tuple[str, str], float] | None = None,
        ip: str = "127.0.53.6",
    ) -> None:
        self.records, self.delays = records, delays or {}
        self.asked: list[tuple[str, str]] = []
        super().__init__(ip)

    def respond(self, query: dns.message.Message, peer: tuple[str, int]) -> None:
        question = query.question[0]
        key = (question.name.to_text().rstrip(".").lower(), dns.rdatatype.to_text(question.rdtype))
        self.asked.append(key)
        if key in self.records:
            timer = threading.Timer(self.delays.get(key, 0.0), self._answer, (query, key, peer))
            timer.daemon = True
            timer.start()

    def _answer(self, query: dns.message.Message, key: tuple[str, str], peer: tuple[str, int]) -> None:
        import dns.rrset

        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.answer.append(dns.rrset.from_text(key[0] + ".", 300, "IN", key[1], *self.records[key]))
        self.send(response, peer)
