"""Benchmark: `exconn posture` vs checkdmarc on synthetic domains served by the loopback servers.

    python bench/bench_posture.py [--domains 1000] [--budget 300] [--concurrency 32]

Starts the same real servers as the test suite (Knot signing a `test.` zone, Unbound validating in
front of it, nginx serving one MTA-STS policy per domain over TLS with SNI), then, in the same run:

- exconn: `scan_domains(...)` with `--no-smtp` semantics (MX, MTA-STS TXT + policy fetch, TLS-RPT,
  DANE TLSA lookups per MX), at the CLI's default concurrency, and once more with concurrency 1;
- checkdmarc: `check_domains(domains, nameservers=[Unbound])`, as a user runs it (it checks SOA, NS,
  DNSSEC, MTA-STS, MX, SPF, DMARC, TLS-RPT, BIMI; no MX TLS probe, `check_mx_tls=False`), sequential
  as it is written.

Neither tool opens an SMTP connection. Everything stays on loopback: Unbound refuses names outside
`test.`, and checkdmarc's HTTPS fetch (requests, system name resolution, port 443) is pointed at nginx
by a `socket.getaddrinfo` wrapper in this process that resolves `*.test` through Unbound, maps port
443 to nginx's unprivileged port and refuses every other name; `REQUESTS_CA_BUNDLE` is the test CA.
Each tool gets a time budget; if it runs out, the rate over the domains done so far is reported.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.nameserver  # noqa: E402
import dns.resolver  # noqa: E402

from exconn.posture.dns import make_resolver  # noqa: E402
from exconn.posture.scan import DEFAULT_CONCURRENCY, ScanOptions, scan_domains  # noqa: E402
from tests.servers.ca import TestCA  # noqa: E402
from tests.servers.dns import DnsServers, Zone, free_port  # noqa: E402
from tests.servers.https import Nginx, Vhost  # noqa: E402

NGINX_IP = "127.0.80.11"
POLICY = b"version: STSv1\nmode: enforce\nmx: *.bench.test\nmax_age: 604800\n"


def domain_names(count: int) -> list[str]:
    return [f"d{i:04d}.bench.test" for i in range(count)]


def zone_records(domains: list[str]) -> list[str]:
    records = ["mx.bench A 127.0.0.1"]
    for domain in domains:
        label = domain.removesuffix(".test")
        records += [
            f"{label} MX 10 mx.bench.test.",
            f'_mta-sts.{label} TXT "v=STSv1; id=bench1;"',
            f"mta-sts.{label} A {NGINX_IP}",
            f'_smtp._tls.{label} TXT "v=TLSRPTv1; rua=mailto:tlsrpt@bench.test"',
        ]
    return records


def loopback_getaddrinfo(resolver: dns.resolver.Resolver, https_port: int) -> Callable[..., Any]:
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.rstrip(".").endswith(".test"):
            answer = resolver.resolve(name, "A")
            mapped = https_port if str(port) in ("443", "https") else port
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(r), int(mapped)))
                for r in answer
            ]
        if name in ("localhost", "127.0.0.1", "::1") or name.startswith("127."):
            return original(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"bench: {name} is not a loopback test name")

    return getaddrinfo


def timed(
    label: str, budget: float, domains: list[str], run: Callable[[list[str]], int], chunk: int
) -> float:
    """Run `run` over chunks of `domains` until done or out of budget; print and return domains/s."""
    started = time.perf_counter()
    done = 0
    for start in range(0, len(domains), chunk):
        done += run(domains[start : start + chunk])
        if time.perf_counter() - started > budget:
            print(f"  {label}: budget of {budget:g}s used up after {done} domains")
            break
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    print(f"  {label:<34} {done:5d} domains in {elapsed:8.2f} s = {rate:8.1f} domains/s")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per tool at most")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    import checkdmarc

    domains = domain_names(args.domains)
    with tempfile.TemporaryDirectory(prefix="exconn-bench-") as tmp:
        base = Path(tmp)
        ca = TestCA(base / "ca")
        cert = ca.issue("bench-web", [f"mta-sts.{d}" for d in domains])
        print(f"starting Knot + Unbound with {len(domains)} domains, nginx with their policies ...")
        started = time.perf_counter()
        dns_servers = DnsServers.start(
            base / "dns", [Zone("test.", zone_records(domains))], startup_timeout=120, ttl=3600
        )
        nginx: Nginx | None = None
        try:
            https_port = free_port(NGINX_IP, udp=False)
            vhost = Vhost(r"~^mta-sts\.d[0-9]+\.bench\.test$", cert, body=POLICY)
            nginx = Nginx.start(base / "nginx", [vhost], ip=NGINX_IP, port=https_port)
            print(
                f"  servers ready in {time.perf_counter() - started:.1f} s; resolver {dns_servers.resolver}"
            )
            resolver = make_resolver(dns_servers.resolver, timeout=args.timeout)
            options = ScanOptions(
                timeout=args.timeout, ca_file=str(ca.pem_path), smtp=False, https_port=https_port
            )

            # sanity: both tools see a valid policy on the same server before anything is timed
            sample = scan_domains(domains[:1], resolver=resolver, options=options).domains[0]
            assert sample.mta_sts.status == "valid", sample.mta_sts
            ip, port = dns_servers.resolver.split(":")
            nameservers = [dns.nameserver.Do53Nameserver(ip, int(port))]
            os.environ["REQUESTS_CA_BUNDLE"] = str(ca.pem_path)
            socket.getaddrinfo = loopback_getaddrinfo(resolver, https_port)  # type: ignore[assignment]
            check = checkdmarc.check_domains([domains[0]], nameservers=nameservers, timeout=args.timeout)
            assert isinstance(check, dict), check
            assert check["mta_sts"]["valid"] is True, check["mta_sts"]
            assert check["smtp_tls_reporting"]["valid"] is True, check["smtp_tls_reporting"]

            # Warm Unbound's cache (TTL 3600) with both tools' queries, so that no timed run pays for
            # another's cold cache: what is measured is each tool's own cost.
            print("warming the resolver cache with both tools (untimed) ...")
            scan_domains(domains, resolver=resolver, options=options, concurrency=args.concurrency)
            checkdmarc.check_domains(domains, nameservers=nameservers, timeout=args.timeout)

            print(f"timing {len(domains)} domains (no SMTP for either tool, warm resolver cache):")

            def exconn_run(concurrency: int) -> Callable[[list[str]], int]:
                def run(chunk: list[str]) -> int:
                    report = scan_domains(chunk, resolver=resolver, options=options, concurrency=concurrency)
                    bad = [d.domain for d in report.domains if d.mta_sts.status != "valid"]
                    assert not bad, f"exconn saw no valid policy for {bad[:3]}"
                    return len(report.domains)

                return run

            def checkdmarc_run(chunk: list[str]) -> int:
                results = checkdmarc.check_domains(chunk, nameservers=nameservers, timeout=args.timeout)
                results = results if isinstance(results, list) else [results]
                bad = [r["domain"] for r in results if r["mta_sts"]["valid"] is not True]
                assert not bad, f"checkdmarc saw no valid policy for {bad[:3]}"
                return len(results)

            ours = timed(
                f"exconn posture (concurrency {args.concurrency})",
                args.budget,
                domains,
                exconn_run(args.concurrency),
                chunk=max(args.concurrency * 4, 100),
            )
            ours_serial = timed(
                "exconn posture (concurrency 1)", args.budget, domains, exconn_run(1), chunk=50
            )
            theirs = timed("checkdmarc.check_domains", args.budget, domains, checkdmarc_run, chunk=50)
            print(
                f"ratio exconn/checkdmarc: {ours / theirs:.1f}x (concurrency {args.concurrency}), "
                f"{ours_serial / theirs:.1f}x (concurrency 1)"
            )
        finally:
            if nginx is not None:
                nginx.stop()
            dns_servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
