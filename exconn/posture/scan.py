"""Observe many domains concurrently: MX, MTA-STS, TLS-RPT, the SMTP probe per MX, then DANE.

One event loop carries the scan: `scan_domains` keeps `concurrency` domains in flight, and each
domain's independent look-ups run at the same time as coroutines (adns.py: a batch of questions on
one socket; https.py: the policy fetch), so a domain costs about its longest chain (MX -> TLSA |
TLS-RPT; TXT | A -> fetch; MX -> A -> probe), a dead host its own timeout, and no thread waits for an
answer. The SMTP probe (blocking sockets, STARTTLS) and the rare full-path DNS question run on
executors, one each. One domain's failure (even an unexpected exception) becomes that domain's
`errors`, never the end of the run. Results keep the order of the input. Nothing here builds a
client on its own: the resolver is passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import dns.resolver

from exconn.names import normalize
from exconn.posture import adns, aio
from exconn.posture import dns as pdns
from exconn.posture import workers as workers_mod
from exconn.posture.certs import TrustStore
from exconn.posture.dane import check_dane, tlsa_name
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
from exconn.posture.mtasts import discovery_questions, observe_mta_sts, policy_matches
from exconn.posture.smtp import MxProbe, probe_mx
from exconn.posture.tlsrpt import judge_tlsrpt, tlsrpt_name

_T = TypeVar("_T")

DEFAULT_CONCURRENCY = 32
MEMO_HOSTS = 4096  # MX hosts whose TLSA and probe a scan keeps for the domains to come
MAX_MX_HOSTS = 10  # a domain with more MX hosts gets the first ten (by preference) probed
MAX_THREADS = 256  # SMTP probes and full-path DNS questions in flight at once, per process


@dataclass(frozen=True, slots=True)
class ScanOptions:
    timeout: float = 10.0
    ca_file: str | None = None
    smtp: bool = True
    smtp_port: int = 25
    https_port: int = 443


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # a third of datetime's cost


class _PerHost:
    """What a scan learns once per MX host however many domains name it (their TLSA records, the
    SMTP probe): domains hosted together (Exchange Online, Google) share a handful of MX hosts, and
    asking each one a thousand times costs time, DNS traffic and the goodwill of the host (a probe
    per domain looks like a scan and meets rate limits). The first domain to need a host starts the
    job, with a deadline of its own (never the domain's, which may be nearly spent); the others
    await the same answer, shielded, so one domain's end never cancels it for the rest, and each
    waits for a TLSA answer only until its own deadline. A failure (a DNS error or timeout, an
    exception) is handed to those waiting and then forgotten: the next domain asks again. The
    answers kept are the `MEMO_HOSTS` hosts used last (a scan of self-hosted domains names as many
    hosts as domains). One per scan and loop (a worker process has its own)."""

    def __init__(self) -> None:
        self.tlsa: _Memo[pdns.Lookup] = _Memo(lambda found: found.status != "error")
        self.probes: _Memo[MxProbe | MxHostFacts] = _Memo(lambda found: not isinstance(found, MxHostFacts))
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def tlsa_of(
        self, hosts: Sequence[str], resolver: dns.resolver.Resolver, run: _Run
    ) -> list[pdns.Lookup]:
        """`resolver`: the domain's (its deadline bounds the wait)."""
        waiting: dict[str, asyncio.Future[pdns.Lookup]] = {}
        for host in hosts:
            future = self.tlsa.get(host)
            if future is not None:
                waiting[host] = future
        new = [host for host in hosts if host not in waiting]
        if new:  # one batch for the hosts nobody is asking for
            own = pdns.with_deadline(run.resolver, time.monotonic() + run.options.timeout)
            futures = self.tlsa.reserve(new)
            waiting.update(zip(new, futures, strict=True))
            self._start(_settle(futures, adns.ask(own, [(tlsa_name(h), "TLSA") for h in new])))
        pending = [asyncio.shield(future) for future in waiting.values() if not future.done()]
        if pending:
            deadline: float | None = getattr(resolver, "deadline", None)
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            await asyncio.wait(pending, timeout=left)
        return [
            waiting[host].result() if waiting[host].done() else _tlsa_timeout(host, run.options.timeout)
            for host in hosts
        ]

    async def probe_of(self, host: str, run: _Run) -> MxProbe | MxHostFacts:
        future = self.probes.get(host)
        if future is None:
            own = pdns.with_deadline(run.resolver, time.monotonic() + run.options.timeout)
            future = self.probes.reserve([host])[0]
            self._start(_settle([future], _listed(_probe_host(host, own, run))))
        return future.result() if future.done() else await asyncio.shield(future)

    def _start(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._running.add(task)
        task.add_done_callback(self._running.discard)


def _tlsa_timeout(host: str, timeout: float) -> pdns.Lookup:
    name = tlsa_name(host)
    error = ProbeError("dns-timeout", f"TLSA {name}: no answer within {timeout:g}s")
    return pdns.failed_lookup(name, "TLSA", error)


class _Memo(Generic[_T]):
    """Futures by host: those in flight, and of the settled ones those `keep` accepts, at most
    `limit` (the least recently used leave first)."""

    def __init__(self, keep: Callable[[_T], bool], limit: int = MEMO_HOSTS) -> None:
        self._keep, self._limit = keep, limit
        self._futures: OrderedDict[str, asyncio.Future[_T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._futures)

    def get(self, host: str) -> asyncio.Future[_T] | None:
        future = self._futures.get(host)
        if future is not None:
            self._futures.move_to_end(host)
        return future

    def reserve(self, hosts: list[str]) -> list[asyncio.Future[_T]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[_T]] = []
        for host in hosts:
            future: asyncio.Future[_T] = loop.create_future()
            future.add_done_callback(functools.partial(self._settled, host))
            self._futures[host] = future
            futures.append(future)
        while len(self._futures) > self._limit:
            oldest = next(iter(self._futures.values()))
            if not oldest.done():
                break  # in flight: bounded by the scan's concurrency
            self._futures.popitem(last=False)
        return futures

    def _settled(self, host: str, future: asyncio.Future[_T]) -> None:
        # Retrieved here, so an exception nobody awaited (all cancelled) is not logged as lost.
        failed = future.cancelled() or future.exception() is not None
        if (failed or not self._keep(future.result())) and self._futures.get(host) is future:
            del self._futures[host]


async def _listed(job: Awaitable[_T]) -> list[_T]:
    return [await job]


async def _settle(futures: list[asyncio.Future[_T]], job: Awaitable[list[_T]]) -> None:
    """Resolve `futures` with `job`'s results in order, or all with its exception."""
    try:
        results = await job
    except Exception as exc:  # every waiter gets it (observe_domain makes it that domain's error)
        for future in futures:
            future.set_exception(exc)
        return
    except BaseException:  # cancelled with the scan (Ctrl-C): so are its waiters
        for future in futures:
            future.cancel()
        raise
    for future, result in zip(futures, results, strict=True):
        future.set_result(result)


@dataclass(frozen=True, slots=True)
class _Run:
    """What every domain of one scan shares: loaded once (the trust store costs ~18 ms)."""

    resolver: dns.resolver.Resolver
    options: ScanOptions
    trust: TrustStore
    tls: ssl.SSLContext
    hosts: _PerHost

    @classmethod
    def make(cls, resolver: dns.resolver.Resolver, options: ScanOptions, trust: TrustStore | None) -> _Run:
        trust = trust or TrustStore.load(options.ca_file)
        return cls(resolver, options, trust, trust.https_context(), _PerHost())


def scan_domain(
    domain: str,
    *,
    resolver: dns.resolver.Resolver,
    options: ScanOptions,
    trust: TrustStore | None = None,
) -> DomainPosture:
    """Everything exconn observes about one domain. Never raises. `trust`: the run's trust store."""

    async def alone() -> DomainPosture:
        try:
            run = _Run.make(resolver, options, trust)
        except Exception as exc:  # as `observe_domain`: a failure is data
            return failed_posture(normalize(domain), now_iso(), _internal(exc))
        with _executor(1):
            return await observe_domain(domain, run)

    return aio.run(alone())


def _internal(exc: BaseException) -> ProbeError:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # the first failure of a task group says what went wrong
    return ProbeError("internal-error", f"{type(exc).__name__}: {exc}")


async def observe_domain(domain: str, run: _Run) -> DomainPosture:
    """`scan_domain` on the running loop. Never raises."""
    domain = normalize(domain)
    observed_at = now_iso()
    try:
        return await _scan(domain, observed_at, run)
    except Exception as exc:  # one domain never stops the run: an unforeseen failure is data too
        return failed_posture(domain, observed_at, _internal(exc))


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


async def _scan(domain: str, observed_at: str, run: _Run) -> DomainPosture:
    """The independent parts at the same time: MTA-STS (TXT beside the policy host's addresses ->
    fetch); MX beside TLS-RPT; then per MX host its TLSA beside its chain (addresses -> SMTP probe),
    DANE judged at the end."""
    options = run.options
    # One deadline for all of this domain's DNS (issue 9 §3): a server that holds every question
    # costs the timeout once, not once per lookup along a chain.
    resolver = pdns.with_deadline(run.resolver, time.monotonic() + options.timeout)
    # The first questions of every part in one exchange (one socket); each part goes on as soon as
    # its own answers are in.
    mx_part, discovery = adns.ask_apart(
        resolver, [[(domain, "MX"), (tlsrpt_name(domain), "TXT")], discovery_questions(domain)]
    )
    async with asyncio.TaskGroup() as group:
        mta_sts_job = group.create_task(
            observe_mta_sts(
                domain,
                resolver=resolver,
                timeout=options.timeout,
                tls=run.tls,
                port=options.https_port,
                asked=discovery,
            )
        )
        mx_answer, tlsrpt_answer = await mx_part
        found = pdns.judge_mx(mx_answer) or pdns.implicit_mx(
            domain, mx_answer, *await adns.addresses(resolver, domain)
        )
        mx = MxFacts(
            status=MxStatus(found.status),
            records=tuple(MxRecord(h, p) for h, p in found.records),
            authenticated=found.authenticated,
            errors=found.errors,
        )
        hosts = list(dict.fromkeys(mx.hosts))[:MAX_MX_HOSTS]
        tlsa_job = group.create_task(run.hosts.tlsa_of(hosts, resolver, run))
        probe_jobs = (
            {host: group.create_task(run.hosts.probe_of(host, run)) for host in hosts} if options.smtp else {}
        )
        tlsrpt = judge_tlsrpt(tlsrpt_name(domain), tlsrpt_answer)
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
    tlsa = dict(zip(hosts, tlsa_job.result(), strict=True))
    if not hosts:
        dane = DaneFacts(status=DaneStatus.NOT_APPLICABLE)
    else:
        judge = functools.partial(
            check_dane, hosts, resolver=resolver, chains=chains, name_matches=names, tlsa=tlsa
        )
        # Signed TLSA records send DANE to ask whether the host's addresses are signed too (a
        # blocking look-up): on the executor then; otherwise nothing is asked.
        signed = any(result.ok and result.authenticated for result in tlsa.values())
        dane = await asyncio.get_running_loop().run_in_executor(None, judge) if signed else judge()
    return DomainPosture(
        domain=domain,
        observed_at=observed_at,
        mx=mx,
        mta_sts=mta_sts,
        tlsrpt=tlsrpt,
        dane=dane,
        mx_hosts=tuple(mx_hosts),
    )


async def _probe_host(host: str, resolver: dns.resolver.Resolver, run: _Run) -> MxProbe | MxHostFacts:
    """One MX host's chain: its addresses (A beside AAAA), then the SMTP probe (on the executor)."""
    addresses, dns_errors = await adns.addresses(resolver, host)
    if not addresses:
        errors = tuple(dns_errors) or (ProbeError("dns-no-address", f"{host} has no A or AAAA record"),)
        return MxHostFacts(host=host, policy_match=None, probe=ProbeStatus.ERROR, errors=errors)
    options = run.options
    probe = functools.partial(
        probe_mx, host, addresses=addresses, port=options.smtp_port, timeout=options.timeout, trust=run.trust
    )
    return await asyncio.get_running_loop().run_in_executor(None, probe)


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
    run = _Run.make(resolver, options, None)
    results: list[DomainPosture | None] = [None] * len(unique)

    async def scan_all() -> None:
        todo = iter(enumerate(unique))  # shared by the slots: one loop thread, no lock needed

        async def slot() -> None:
            for index, domain in todo:
                result = results[index] = await observe_domain(domain, run)
                if progress is not None:
                    progress(result)

        with _executor(workers):
            await asyncio.gather(*(slot() for _ in range(workers)))

    aio.run(scan_all())
    return PostureReport(observed_at=started, domains=tuple(r for r in results if r is not None))


@contextlib.contextmanager
def _executor(concurrency: int) -> Iterator[None]:
    """The running loop's executors for this scan: the default one for SMTP probes (a domain has up
    to ten MX hosts), and one of its own for full-path DNS questions (adns.full_path_pool), so a
    question never queues behind probes hanging to their timeout while its deadline runs. Threads
    are made only as work comes."""
    probes = ThreadPoolExecutor(
        max_workers=min(MAX_THREADS, 4 * concurrency), thread_name_prefix="posture-probe"
    )
    questions = ThreadPoolExecutor(
        max_workers=min(MAX_THREADS, 4 * concurrency), thread_name_prefix="posture-dns"
    )
    asyncio.get_running_loop().set_default_executor(probes)
    token = adns.full_path_pool.set(questions)
    try:
        yield
    finally:
        adns.full_path_pool.reset(token)
        for pool in (probes, questions):
            pool.shutdown(wait=True, cancel_futures=True)  # all done by now; no thread outlives the scan


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
    tasks: Any, results: Any, slots: int, resolver: dns.resolver.Resolver, options: ScanOptions
) -> None:
    """One worker process: its trust store once, then `slots` domains at a time on its own loop."""
    run = _Run.make(resolver, options, None)

    async def main() -> None:
        with _executor(slots):
            await workers_mod.serve(tasks, results, slots, lambda domain: observe_domain(domain, run))

    workers_mod.quiet()
    aio.run(main())
