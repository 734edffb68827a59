"""Observe many domains concurrently: MX, MTA-STS, TLS-RPT, the SMTP probe per MX, then DANE.

`scan_domains` runs `scan_domain` for each domain on a bounded thread pool, and each domain's
independent look-ups at the same time through the run's `Fanout` (fanout.py: layered pools, so no
nested-pool deadlock, and a bounded number of threads); one domain's failure (even an unexpected
exception) becomes that domain's `errors`, never the end of the run. Results keep the
order of the input. Nothing here builds a client on its own: the resolver is passed in.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import dns.resolver

from exconn.names import normalize
from exconn.posture import dns as pdns
from exconn.posture import workers as workers_mod
from exconn.posture.certs import TrustStore
from exconn.posture.dane import check_dane, lookup_tlsa, tlsa_name
from exconn.posture.errors import ProbeError
from exconn.posture.facts import (
    DaneFacts,
    DaneStatus,
    DomainPosture,
    MtaStsFacts,
    MtaStsStatus,
    MxFacts,
    MxHostFacts,
    MxRecord,
    MxStatus,
    PostureReport,
    ProbeStatus,
    TlsRptFacts,
    TlsRptStatus,
)
from exconn.posture.fanout import Fanout
from exconn.posture.mtasts import check_mta_sts, policy_matches
from exconn.posture.smtp import MxProbe, probe_mx
from exconn.posture.tlsrpt import check_tlsrpt

DEFAULT_CONCURRENCY = 32
MAX_MX_HOSTS = 10  # a domain with more MX hosts gets the first ten (by preference) probed


@dataclass(frozen=True, slots=True)
class ScanOptions:
    timeout: float = 10.0
    ca_file: str | None = None
    smtp: bool = True
    smtp_port: int = 25
    https_port: int = 443


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scan_domain(
    domain: str,
    *,
    resolver: dns.resolver.Resolver,
    options: ScanOptions,
    trust: TrustStore | None = None,
    fanout: Fanout | None = None,
) -> DomainPosture:
    """Everything exconn observes about one domain. Never raises.

    `trust` is the run's trust store and `fanout` its pools (`scan_domains` makes both once); without
    them this call makes its own.
    """
    domain = normalize(domain)
    observed_at = now_iso()
    try:
        trust = trust or TrustStore.load(options.ca_file)
        if fanout is not None:
            return _scan(domain, observed_at, resolver, options, trust, fanout)
        with Fanout(1) as own:
            return _scan(domain, observed_at, resolver, options, trust, own)
    except Exception as exc:  # one domain never stops the run: an unforeseen failure is data too
        return failed_posture(
            domain, observed_at, ProbeError("internal-error", f"{type(exc).__name__}: {exc}")
        )


def failed_posture(domain: str, observed_at: str, error: ProbeError) -> DomainPosture:
    """A domain nothing could be observed for: every part an error, with `error`."""
    return DomainPosture(
        domain=domain,
        observed_at=observed_at,
        mx=MxFacts(status=MxStatus.ERROR, errors=(error,)),
        mta_sts=MtaStsFacts(status=MtaStsStatus.ERROR, errors=(error,)),
        tlsrpt=TlsRptFacts(status=TlsRptStatus.ERROR, errors=(error,)),
        dane=DaneFacts(status=DaneStatus.ERROR, errors=(error,)),
        errors=(error,),
    )


def _scan(
    domain: str,
    observed_at: str,
    resolver: dns.resolver.Resolver,
    options: ScanOptions,
    trust: TrustStore,
    fan: Fanout,
) -> DomainPosture:
    """The independent parts at the same time: MTA-STS (TXT beside the policy host's addresses ->
    fetch) and TLS-RPT beside MX; then per MX host its TLSA beside its chain (addresses -> SMTP
    probe), DANE judged at the end. A domain costs about its longest chain, a dead host its timeout."""
    # One deadline for all of this domain's DNS (issue 9 §3): a server that holds every question
    # costs the timeout once, not once per lookup along a chain.
    resolver = pdns.with_deadline(resolver, time.monotonic() + options.timeout)
    mta_sts_job = fan.chain(
        lambda: check_mta_sts(
            domain,
            resolver=resolver,
            timeout=options.timeout,
            trust=trust,
            port=options.https_port,
            fanout=fan,
        )
    )
    # With the quick DNS path, TLS-RPT is asked on this thread after MX, while the TLSA answers
    # come (no hand-off: a thread switch under the GIL cost more CPU than the question); otherwise
    # beside MX. Either way this thread's chain is MX -> TLSA | TLS-RPT: two answers deep.
    quick = pdns.quick_path(resolver)
    tlsrpt_job = None if quick else fan.leaf(lambda: check_tlsrpt(domain, resolver=resolver))
    found = pdns.lookup_mx(resolver, domain, fanout=fan)
    mx = MxFacts(
        status=MxStatus(found.status),
        records=tuple(MxRecord(h, p) for h, p in found.records),
        authenticated=found.authenticated,
        errors=found.errors,
    )
    hosts = list(dict.fromkeys(mx.hosts))[:MAX_MX_HOSTS]
    # TLSA of every host sent now, beside the probes; the answers wait in the socket (no thread).
    tlsa_wait = pdns.ask_together(resolver, [(tlsa_name(host), "TLSA") for host in hosts]) if quick else None
    tlsa_jobs = (
        {host: fan.leaf(functools.partial(lookup_tlsa, resolver, host)) for host in hosts}
        if tlsa_wait is None
        else {}
    )
    probe_jobs = (
        {
            host: fan.chain(functools.partial(_probe_host, host, resolver, options, trust, fan))
            for host in hosts
        }
        if options.smtp
        else {}
    )
    tlsrpt = check_tlsrpt(domain, resolver=resolver) if tlsrpt_job is None else tlsrpt_job.result()
    mta_sts = mta_sts_job.result()
    mx_hosts: list[MxHostFacts] = []
    chains: dict[str, Sequence[bytes] | None] = {}
    names: dict[str, bool | None] = {}
    for host in hosts:
        policy_match = policy_matches(mta_sts.policy, host) if mta_sts.policy is not None else None
        if not options.smtp:
            mx_hosts.append(MxHostFacts(host=host, policy_match=policy_match, probe=ProbeStatus.SKIPPED))
            continue
        probe = probe_jobs[host].result()
        if isinstance(probe, MxHostFacts):  # no address: nothing was probed
            mx_hosts.append(replace(probe, policy_match=policy_match))
            continue
        mx_hosts.append(host_facts(probe, policy_match))
        if probe.certificate is not None:
            chains[host] = probe.certificate.chain_der
            names[host] = probe.certificate.name_matches
    if tlsa_wait is not None:
        tlsa = dict(zip(hosts, tlsa_wait(), strict=True))
    else:
        tlsa = {host: job.result() for host, job in tlsa_jobs.items()}
    dane = (
        check_dane(hosts, resolver=resolver, chains=chains, name_matches=names, tlsa=tlsa)
        if hosts
        else DaneFacts(status=DaneStatus.NOT_APPLICABLE)
    )
    return DomainPosture(
        domain=domain,
        observed_at=observed_at,
        mx=mx,
        mta_sts=mta_sts,
        tlsrpt=tlsrpt,
        dane=dane,
        mx_hosts=tuple(mx_hosts),
    )


def _probe_host(
    host: str, resolver: dns.resolver.Resolver, options: ScanOptions, trust: TrustStore, fan: Fanout
) -> MxProbe | MxHostFacts:
    """One MX host's chain: its addresses (A beside AAAA), then the SMTP probe."""
    addresses, dns_errors = pdns.resolve_addresses(resolver, host, fanout=fan)
    if not addresses:
        errors = tuple(dns_errors) or (ProbeError("dns-no-address", f"{host} has no A or AAAA record"),)
        return MxHostFacts(host=host, policy_match=None, probe=ProbeStatus.ERROR, errors=errors)
    return probe_mx(host, addresses=addresses, port=options.smtp_port, timeout=options.timeout, trust=trust)


def host_facts(probe: MxProbe, policy_match: bool | None) -> MxHostFacts:
    """Normalise an SMTP probe into the posture's per-MX facts."""
    cert = probe.certificate
    reply = probe.plaintext_mail_from
    return MxHostFacts(
        host=probe.host,
        policy_match=policy_match,
        probe=ProbeStatus.DONE if probe.banner is not None else ProbeStatus.ERROR,
        address=probe.address,
        port=probe.port,
        banner=str(probe.banner) if probe.banner is not None else None,
        starttls=probe.starttls_offered,
        tls_established=probe.tls_established if probe.starttls_offered else None,
        tls_version=probe.tls_version,
        cipher=probe.cipher,
        # The chain serves DANE in this run only; a posture in memory equals the one read back.
        certificate=replace(cert, chain_der=()) if cert is not None else None,
        plaintext_mail_from=reply,
        plaintext_mail=probe.plaintext_mail if reply is not None else None,
        errors=probe.errors,
    )


def scan_domains(
    domains: Sequence[str],
    *,
    resolver: dns.resolver.Resolver,
    options: ScanOptions | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[DomainPosture], None] | None = None,
    processes: int | None = None,
) -> PostureReport:
    """Scan `domains` with at most `concurrency` at a time; results in input order.

    `processes` spreads the domains over that many worker processes, `concurrency` shared among
    them (workers.py); None chooses: more than one only for many domains at a high concurrency, and
    only with dnspython's own resolver class (a subclass may count or hold state that a copy in
    another process would split)."""
    options = options or ScanOptions()
    started = now_iso()
    unique = list(dict.fromkeys(normalize(d) for d in domains if d.strip()))
    if not unique:
        return PostureReport(observed_at=started, domains=())
    workers = max(1, min(concurrency, len(unique)))
    if processes is None:
        plain = type(resolver) is dns.resolver.Resolver
        processes = workers_mod.process_count(len(unique), workers) if plain else 1
    processes = max(1, min(processes, workers))
    if processes > 1:
        return PostureReport(
            observed_at=started,
            domains=_scan_in_processes(unique, resolver, options, workers, processes, progress),
        )

    trust = TrustStore.load(options.ca_file)  # once per run: parsing the store costs ~18 ms

    with Fanout(workers) as fan, ThreadPoolExecutor(max_workers=workers) as pool:

        def one(domain: str) -> DomainPosture:
            result = scan_domain(domain, resolver=resolver, options=options, trust=trust, fanout=fan)
            if progress is not None:
                progress(result)
            return result

        results = tuple(pool.map(one, unique))
    return PostureReport(observed_at=started, domains=results)


def _scan_in_processes(
    unique: list[str],
    resolver: dns.resolver.Resolver,
    options: ScanOptions,
    concurrency: int,
    processes: int,
    progress: Callable[[DomainPosture], None] | None,
) -> tuple[DomainPosture, ...]:
    found: dict[int, DomainPosture] = {}

    def arrived(index: int, result: DomainPosture) -> None:
        found[index] = result
        if progress is not None:
            progress(result)

    workers_mod.spread(unique, _worker, (resolver, options), concurrency, processes, arrived)
    for index, domain in enumerate(unique):  # a worker died (killed, out of memory): say so per domain
        if index not in found:
            lost = failed_posture(
                domain, now_iso(), ProbeError("internal-error", "the worker process scanning it died")
            )
            arrived(index, lost)
    return tuple(found[index] for index in range(len(unique)))


def _worker(
    tasks: Any, results: Any, threads: int, resolver: dns.resolver.Resolver, options: ScanOptions
) -> None:
    """One worker process: its trust store and pools once, then `threads` domains at a time."""
    trust = TrustStore.load(options.ca_file)
    with Fanout(threads) as fan:
        workers_mod.serve(
            tasks,
            results,
            threads,
            lambda domain: scan_domain(domain, resolver=resolver, options=options, trust=trust, fanout=fan),
        )
