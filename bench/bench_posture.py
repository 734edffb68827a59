"""Benchmark: `exconn posture --no-smtp` vs postfix-mta-sts-resolver and checkdmarc, 30 ms away.

    sudo python bench/bench_posture.py [--domains 1000] [--concurrency 1,32,128] [--budget 40]
                                       [--delay 0.015] [--timeout 2] [--total 1200]

Real latency, without netem (this kernel has none): two network namespaces of our own, `exb-c-PID`
(the clients) and `exb-s-PID` (the servers), joined by a pair of TUN devices and a relay process that
holds every IP packet `--delay` seconds in each direction (30 ms round trip by default: TCP and TLS
handshakes, DNS over UDP and TCP all pay it, as on a real network). Addresses are 10.77.0.0/24, which
exist only inside those two namespaces.

The world, in the server namespace, as the test suite builds it: Knot signing `test.` with
`--domains` mail domains (MX, `_mta-sts` TXT, `_smtp._tls` TXT), Unbound validating in front of it on
10.77.0.53:53, nginx serving every `mta-sts.<domain>` policy over TLS on 10.77.0.2:443; 1% of the
domains have their policy host on 10.77.0.3, which accepts TCP and never answers (a dead host). The
client namespace's resolv.conf (`/etc/netns/exb-c-PID/`) names Unbound, so all three tools resolve
through it, over the relay; the test CA is their trust store (`--ca-file`, `SSL_CERT_FILE`,
`REQUESTS_CA_BUNDLE`).

In the same run, for each concurrency, on the same warm resolver cache (every tool runs once over all
domains untimed first):
- exconn: `scan_domains` without SMTP (MX, MTA-STS TXT + policy fetch, TLS-RPT, TLSA per MX host), as
  the CLI runs it: over worker processes when the domains and the concurrency make it worth it (the
  CPU column counts them). Every domain here names the same MX host, as a provider's customers do,
  so its TLSA is asked once per run (exconn asks once per MX host per scan);
- postfix-mta-sts-resolver: `STSResolver.resolve` (MTA-STS TXT + policy fetch only), asyncio tasks
  bounded by a semaphore;
- checkdmarc: `check_domains([domain])` (SOA, NS, DNSSEC, MX, SPF, DMARC, MTA-STS, TLS-RPT, BIMI; no
  SMTP) per domain on a thread pool.
At concurrency 1 each run gets `--budget` seconds (in chunks of 20; the rate is then over the domains
done); concurrent runs take the whole list at once (chunks would end on their slowest, dead, domain),
three interleaved rounds per tool (checkdmarc once), the median kept, and a second table gives the
live rate: valid policies until the last arrived, without the tail of the last dead host's timeout;
the whole benchmark gets `--total` seconds; namespaces, relay and servers are removed on the way
out, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIENT_IP, POLICY_IP, DEAD_IP, MX_IP, RESOLVER_IP = (
    "10.77.0.1",
    "10.77.0.2",
    "10.77.0.3",
    "10.77.0.4",
    "10.77.0.53",
)
SERVER_IPS = (POLICY_IP, DEAD_IP, MX_IP, RESOLVER_IP)
POLICY = b"version: STSv1\nmode: enforce\nmx: mx.bench.test\nmax_age: 604800\n"
DEAD_EVERY = 100  # 1% dead policy hosts
SANS_PER_CERT = 10
ONE_PROCESS = "exconn, one process"
ROUNDS = 3  # concurrent runs per tool and level, interleaved


def domain_names(count: int) -> list[str]:
    return [f"d{i:04d}.bench.test" for i in range(count)]


def is_dead(domain: str) -> bool:
    return int(domain[1:5]) % DEAD_EVERY == DEAD_EVERY - 1


# --- the relay: a wire with latency -------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000


def _setns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


def _tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def relay(client_ns: str, server_ns: str, delay: float) -> None:
    """Create one TUN device in each namespace and carry packets between them, each `delay` late."""
    client = (_setns(client_ns), _tun("exb0"))[1]
    server = (_setns(server_ns), _tun("exb0"))[1]
    print("ready", flush=True)

    def pump(src: int, dst: int) -> None:
        queue: deque[tuple[float, bytes]] = deque()  # constant delay: FIFO order is due order
        ready = threading.Condition()

        def deliver() -> None:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, packet = queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                with ready:
                    queue.popleft()
                with contextlib.suppress(OSError):
                    os.write(dst, packet)

        threading.Thread(target=deliver, daemon=True).start()
        while True:
            packet = os.read(src, 65536)
            with ready:
                queue.append((time.monotonic() + delay, packet))
                ready.notify()

    threading.Thread(target=pump, args=(client, server), daemon=True).start()
    pump(server, client)


# --- the servers (in the server namespace) ------------------------------------------------------


def zone_records(domains: list[str]) -> list[str]:
    records = [f"mx.bench A {MX_IP}"]
    for domain in domains:
        label = domain.removesuffix(".test")
        records += [
            f"{label} MX 10 mx.bench.test.",
            f'_mta-sts.{label} TXT "v=STSv1; id=bench1;"',
            f"mta-sts.{label} A {DEAD_IP if is_dead(domain) else POLICY_IP}",
            f'_smtp._tls.{label} TXT "v=TLSRPTv1; rua=mailto:tlsrpt@bench.test"',
        ]
    return records


def serve(directory: Path, count: int) -> None:
    from tests.servers.ca import TestCA
    from tests.servers.dns import DnsServers, Zone
    from tests.servers.https import Nginx, SilentTcp, Vhost

    domains = domain_names(count)
    ca = TestCA(directory / "ca")
    # Certificates of SANS_PER_CERT names, not one of a thousand: a 30 KB certificate would need two
    # round trips of TCP slow start in every handshake, which real policy hosts do not pay.
    hosts = [f"mta-sts.{d}" for d in domains]
    groups = [hosts[i : i + SANS_PER_CERT] for i in range(0, len(hosts), SANS_PER_CERT)]
    vhosts = [
        Vhost(" ".join(group), ca.issue(f"bench-web-{n}", group), body=POLICY)
        for n, group in enumerate(groups)
    ]
    dns_servers = DnsServers.start(
        directory / "dns",
        [Zone("test.", zone_records(domains))],
        knot_ip="127.0.53.1",
        unbound_ip=RESOLVER_IP,
        unbound_port=53,
        allow=("10.77.0.0/24",),
        startup_timeout=180,
        ttl=3600,
    )
    stack: list[Any] = [dns_servers]
    try:
        stack.append(Nginx.start(directory / "nginx", vhosts, ip=POLICY_IP, port=443))
        stack.append(SilentTcp(DEAD_IP, 443))
        (directory / "world.json").write_text(json.dumps({"ca": str(ca.pem_path)}))
        print("ready", flush=True)
        sys.stdin.read()  # until the orchestrator closes our stdin
    finally:
        for server in reversed(stack):
            server.stop()


# --- the clients (in the client namespace) ------------------------------------------------------


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (exconn's worker processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


_VALID_AT: list[float] = []  # when each valid policy arrived (perf_counter), for the live rate


def _valid(ok: bool) -> bool:
    if ok:
        _VALID_AT.append(time.perf_counter())
    return ok


def timed(
    label: str, budget: float, domains: list[str], run: Callable[[list[str]], int], chunk: int
) -> tuple[float, float, int]:
    """Run `run` over chunks of `domains` until done or out of budget; returns (domains/s, live
    domains/s, valid). The live rate counts the valid policies until the last one arrived: in one
    concurrent run the last dead host's timeout is a tail every tool waits out alike."""
    _VALID_AT.clear()
    started, cpu = time.perf_counter(), _cpu()
    done = valid = 0
    for start in range(0, len(domains), chunk):
        part = domains[start : start + chunk]
        valid += run(part)
        done += len(part)
        if time.perf_counter() - started > budget:
            break
    elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    rate = done / elapsed if elapsed > 0 else 0.0
    live_for = (max(_VALID_AT) - started) if _VALID_AT else 0.0
    live = len(_VALID_AT) / live_for if live_for > 0 else 0.0
    print(
        f"    {label:<26} {done:5d} domains in {elapsed:7.2f} s = {rate:7.1f} domains/s,"
        f" {1000 * cpu / max(done, 1):5.1f} ms CPU each"
        f"  (valid policies {valid}/{done - sum(map(is_dead, domains[:done]))} live,"
        f" the last at {live_for:.2f} s: {live:.1f}/s)",
        flush=True,
    )
    return rate, live, valid


def measure(ca_file: str, count: int, levels: list[int], budget: float, timeout: float) -> None:
    import checkdmarc
    from postfix_mta_sts_resolver.resolver import STSFetchResult, STSResolver

    from exconn.posture.dns import make_resolver
    from exconn.posture.facts import DomainPosture
    from exconn.posture.scan import ScanOptions, scan_domains

    logging.getLogger("RES").setLevel(logging.ERROR)  # its one warning per dead host
    domains = domain_names(count)
    resolver = make_resolver(f"{RESOLVER_IP}:53", timeout=timeout)
    options = ScanOptions(timeout=timeout, ca_file=ca_file, smtp=False, https_port=443)

    def arrived(posture: DomainPosture) -> None:
        _valid(posture.mta_sts.status == "valid")

    def exconn_run(concurrency: int, processes: int | None = None) -> Callable[[list[str]], int]:
        def run(chunk: list[str]) -> int:
            report = scan_domains(
                chunk,
                resolver=resolver,
                options=options,
                concurrency=concurrency,
                processes=processes,
                progress=arrived,
            )
            return sum(d.mta_sts.status == "valid" for d in report.domains)

        return run

    def sts_run(concurrency: int) -> Callable[[list[str]], int]:
        async def many(chunk: list[str]) -> int:
            sts = STSResolver(loop=asyncio.get_running_loop(), timeout=timeout)
            gate = asyncio.Semaphore(concurrency)

            async def one(domain: str) -> bool:
                async with gate:
                    status, _policy = await sts.resolve(domain)
                    return _valid(status is STSFetchResult.VALID)

            return sum(await asyncio.gather(*(one(d) for d in chunk)))

        return lambda chunk: asyncio.run(many(chunk))

    nameservers = [RESOLVER_IP]

    def checkdmarc_run(concurrency: int) -> Callable[[list[str]], int]:
        def one(domain: str) -> bool:
            result = checkdmarc.check_domains([domain], nameservers=nameservers, timeout=timeout)
            result = result[0] if isinstance(result, list) else result
            return _valid(result["mta_sts"]["valid"] is True)

        def run(chunk: list[str]) -> int:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                return sum(pool.map(one, chunk))

        return run

    tools: dict[str, Callable[[int], Callable[[list[str]], int]]] = {
        "exconn --no-smtp": exconn_run,
        "postfix-mta-sts-resolver": sts_run,
        "checkdmarc": checkdmarc_run,
    }
    # Sanity, then a warm cache for everyone: what is timed is each tool's own cost.
    assert exconn_run(1)(domains[:1]) == 1, "exconn sees no valid policy"
    assert sts_run(1)(domains[:1]) == 1, "postfix-mta-sts-resolver sees no valid policy"
    assert checkdmarc_run(1)(domains[:1]) == 1, "checkdmarc sees no valid policy"
    print("warming the resolver cache with every tool (untimed) ...", flush=True)
    warm_started = time.perf_counter()
    for name, make in tools.items():
        part = domains if name != "checkdmarc" else domains[: max(1, count // 10)]
        make(max(levels))(part)
    print(f"  warm in {time.perf_counter() - warm_started:.1f} s", flush=True)

    rates: dict[tuple[str, int], float] = {}
    live: dict[tuple[str, int], float] = {}
    for level in levels:
        print(f"  concurrency {level}:", flush=True)
        # Serially, chunks keep each run within its budget; concurrently, the whole list at once
        # (chunks would end on their slowest, dead, domain), and the quick tools in interleaved
        # rounds, the median kept: on a shared machine one run's neighbour is another's noise.
        chunk = 20 if level == 1 else len(domains)
        runs: dict[str, Callable[[list[str]], int]] = {name: make(level) for name, make in tools.items()}
        if level > 1:  # what the worker processes add (the CLI's choice) over one process
            runs[ONE_PROCESS] = exconn_run(level, processes=1)
        rounds = 1 if level == 1 else ROUNDS
        seen: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                if name == "checkdmarc" and seen[name]:
                    continue  # ten times slower: once is enough to place it
                rate, live_rate, _ = timed(name, budget, domains, run, chunk=chunk)
                seen[name].append((rate, live_rate))
        for name, figures in seen.items():
            rates[name, level] = statistics.median(rate for rate, _ in figures)
            live[name, level] = statistics.median(live_rate for _, live_rate in figures)
    peers = [n for n in tools if n != "exconn --no-smtp"]
    _table(f"domains/s (the median of {ROUNDS} interleaved runs when concurrent):", rates, levels, peers)
    concurrent = [level for level in levels if level > 1]
    if concurrent:
        title = (
            "live domains/s (valid policies until the last arrived; without the dead hosts' timeout tail):"
        )
        _table(title, live, concurrent, peers)
    for level in levels:
        if (ONE_PROCESS, level) in rates:
            alone = rates[ONE_PROCESS, level]
            gain = f"{rates['exconn --no-smtp', level] / alone:.2f}x" if alone else "-"
            print(
                f"  concurrency {level}: {ONE_PROCESS} {alone:.1f} domains/s; the CLI's choice is {gain} that"
            )


def _table(title: str, rates: dict[tuple[str, int], float], levels: list[int], peers: list[str]) -> None:
    print(f"\n{title}")
    print(f"  {'concurrency':>11}  {'exconn':>8}  " + "  ".join(f"{p:>24}  {'ratio':>6}" for p in peers))
    for level in levels:
        ours = rates["exconn --no-smtp", level]
        cells = "  ".join(
            f"{rates[p, level]:24.1f}  {ours / rates[p, level] if rates[p, level] else float('inf'):5.2f}x"
            for p in peers
        )
        print(f"  {level:>11}  {ours:8.1f}  {cells}")


# --- the orchestrator ---------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def namespaces(tag: str, delay: float) -> Iterator[tuple[str, str]]:
    client_ns, server_ns = f"exb-c-{tag}", f"exb-s-{tag}"
    etc = Path("/etc/netns") / client_ns
    relay_proc: subprocess.Popen[str] | None = None
    try:
        for ns in (client_ns, server_ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {RESOLVER_IP}\noptions timeout:2 attempts:2\n")
        relay_proc = subprocess.Popen(
            [sys.executable, __file__, "--relay", client_ns, server_ns, str(delay)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert relay_proc.stdout is not None
        if relay_proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the relay did not start")
        _ip("-n", client_ns, "addr", "add", f"{CLIENT_IP}/32", "dev", "exb0")
        _ip("-n", client_ns, "link", "set", "exb0", "up")
        _ip("-n", client_ns, "route", "add", "10.77.0.0/24", "dev", "exb0")
        for address in SERVER_IPS:
            _ip("-n", server_ns, "addr", "add", f"{address}/32", "dev", "exb0")
        _ip("-n", server_ns, "link", "set", "exb0", "up")
        _ip("-n", server_ns, "route", "add", f"{CLIENT_IP}/32", "dev", "exb0")
        yield client_ns, server_ns
    finally:
        if relay_proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(relay_proc.pid, signal.SIGKILL)
            relay_proc.wait(timeout=10)
        for ns in (client_ns, server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=10)
        shutil.rmtree(etc, ignore_errors=True)


def orchestrate(args: argparse.Namespace) -> int:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("bench_posture: needs root and iproute2 (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.total
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(
        f"world: {args.domains} domains, 1% dead policy hosts; round trip {2 * args.delay * 1000:.0f} ms "
        f"through a TUN relay; timeout {args.timeout:g} s; budget {args.budget:g} s per run; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="exconn-bench-") as tmp,
        namespaces(str(os.getpid()), args.delay) as (
            client_ns,
            server_ns,
        ),
    ):
        started = time.perf_counter()
        servers = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, sys.executable, __file__, "--serve", tmp, str(args.domains)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            assert servers.stdout is not None
            if servers.stdout.readline().strip() != "ready":
                raise RuntimeError("the servers did not start")
            print(f"servers ready in {time.perf_counter() - started:.1f} s", flush=True)
            ca = json.loads((Path(tmp) / "world.json").read_text())["ca"]
            client_env = {**env, "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca}
            argv = [sys.executable, __file__, "--measure", ca, str(args.domains), args.concurrency]
            argv += ["--budget", str(args.budget), "--timeout", str(args.timeout)]
            left = max(deadline - time.monotonic(), 1.0)
            try:
                return subprocess.run(
                    ["ip", "netns", "exec", client_ns, *argv], env=client_env, timeout=left, check=False
                ).returncode
            except subprocess.TimeoutExpired:
                print(f"bench_posture: stopped at the --total limit of {args.total:g} s", file=sys.stderr)
                return 1
        finally:
            with contextlib.suppress(OSError):
                if servers.stdin is not None:
                    servers.stdin.close()
            try:
                servers.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(servers.pid, signal.SIGKILL)
                servers.wait(timeout=10)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--relay":
        relay(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", nargs=3, metavar=("CA", "DOMAINS", "LEVELS"), help=argparse.SUPPRESS)
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,32,128", help="comma-separated levels")
    parser.add_argument("--budget", type=float, default=40.0, help="seconds per tool and level at most")
    parser.add_argument("--timeout", type=float, default=2.0, help="every tool's network timeout")
    parser.add_argument("--delay", type=float, default=0.015, help="one-way delay in seconds")
    parser.add_argument("--total", type=float, default=1200.0, help="seconds for the whole benchmark")
    args = parser.parse_args()
    if args.measure:
        ca, count, levels = args.measure
        measure(ca, int(count), [int(x) for x in levels.split(",")], args.budget, args.timeout)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
