"""DNS for the posture probes: one resolver, UDP with TCP fallback, answers as data.

Every lookup returns a `Lookup` (an attempt): `ok` with records, `nodata`, `nxdomain`, or `error` with a
`ProbeError` (`dns-timeout`, `dns-servfail`, `dnssec-invalid`, ...). A failure is never reported as an
absence. Queries carry the DO bit and ask for AD (RFC 6840 §5.7) so that a validating resolver says
whether it vouched for an answer; `Lookup.authenticated` and `Lookup.server` record that.

No resolver is built at import time: callers build one with `make_resolver` and pass it in.
"""

from __future__ import annotations

import copy
import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver

from exconn.names import normalize
from exconn.posture import quickdns
from exconn.posture.errors import ProbeError

DEFAULT_PORT = 53


class ResolverAddressError(ValueError):
    """`--resolver` was not `ADDR`, `ADDR:PORT` or `[V6ADDR]:PORT`."""


def parse_resolver_address(text: str) -> tuple[str, int]:
    """Parse `ADDR[:PORT]` (IPv6 as `[ADDR]:PORT` or bare) into an (address, port) pair."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ResolverAddressError(f"bad resolver address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ResolverAddressError(f"bad resolver address {text!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ResolverAddressError(f"bad resolver address {text!r}: not an IP address") from None
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ResolverAddressError(f"bad resolver address {text!r}: bad port {port_text!r}")
        port = int(port_text)
    return str(address), port


def make_resolver(address: str | None = None, *, timeout: float = 5.0) -> dns.resolver.Resolver:
    """A resolver that sends every query to `address` (`ADDR[:PORT]`), or to the system's resolvers.

    dnspython retries over TCP when a UDP answer is truncated. `timeout` bounds each lookup as a whole
    (its `lifetime`). Raises `ResolverAddressError` for a malformed address.
    """
    if address is None:
        resolver = dns.resolver.Resolver(configure=True)
    else:
        host, port = parse_resolver_address(address)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = max(timeout / 2, 0.5)
    resolver.use_edns(0, dns.flags.DO, 1232)
    resolver.flags = dns.flags.RD | dns.flags.AD
    resolver.cache = None
    return resolver


class _Bounded:
    """Mixed into the run's resolver class: every lookup ends by one moment (see `with_deadline`)."""

    deadline: float
    lifetime: float

    def resolve(
        self, qname: dns.name.Name | str, rdtype: str = "A", *args: Any, **kwargs: Any
    ) -> dns.resolver.Answer:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise dns.resolver.LifetimeTimeout(timeout=0.0, errors=[])  # type: ignore[no-untyped-call]
        kwargs["lifetime"] = min(self.lifetime, left)
        answer: dns.resolver.Answer = super().resolve(qname, rdtype, *args, **kwargs)  # type: ignore[misc]
        return answer


_BOUNDED: dict[type[dns.resolver.Resolver], type[dns.resolver.Resolver]] = {}


def _bounded_class(base: type[dns.resolver.Resolver]) -> type[dns.resolver.Resolver]:
    if base not in _BOUNDED:  # a race builds two equal classes: harmless
        _BOUNDED[base] = type(f"Bounded{base.__name__}", (_Bounded, base), {})
    return _BOUNDED[base]


def with_deadline(resolver: dns.resolver.Resolver, deadline: float) -> dns.resolver.Resolver:
    """`resolver`, but every lookup through it ends by `deadline` (time.monotonic()): one domain's
    DNS phase costs at most the timeout, however many of its lookups a hanging server holds."""
    bounded = copy.copy(resolver)  # shares the configuration; lookups are independent
    bounded.__class__ = _bounded_class(type(resolver))
    setattr(bounded, "deadline", deadline)  # noqa: B010 - set on the mixin's instance
    return bounded


def _remaining(resolver: dns.resolver.Resolver, limit: float) -> float:
    deadline = getattr(resolver, "deadline", None)
    return limit if deadline is None else max(min(limit, deadline - time.monotonic()), 0.001)


def describe_resolver(resolver: dns.resolver.Resolver) -> str:
    """`addr:port` of the resolver's first nameserver (for "which resolver vouched")."""
    servers = resolver.nameservers
    if not servers:
        return "?"
    first = str(servers[0])
    return f"[{first}]:{resolver.port}" if ":" in first else f"{first}:{resolver.port}"


@dataclass(frozen=True, slots=True)
class Lookup:
    """One DNS question and what came back."""

    name: str
    rdtype: str
    status: str  # "ok" | "nodata" | "nxdomain" | "error"
    records: tuple[dns.rdata.Rdata, ...] = ()
    authenticated: bool = False  # AD bit in the answer
    server: str | None = None  # the resolver that answered
    error: ProbeError | None = None
    errors: tuple[ProbeError, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def missing(self) -> bool:
        """No such records (NODATA or NXDOMAIN): a real absence, not a failure."""
        return self.status in ("nodata", "nxdomain")


def _server_of(answer: dns.resolver.Answer) -> str:
    nameserver = str(getattr(answer, "nameserver", "?"))
    port = getattr(answer, "port", DEFAULT_PORT)
    return f"[{nameserver}]:{port}" if ":" in nameserver else f"{nameserver}:{port}"


def lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str, *, check_bogus: bool = True) -> Lookup:
    """Resolve `name`/`rdtype`; classify the result. Never raises for DNS trouble.

    With `check_bogus` (the default), a SERVFAIL is asked again with the CD bit: if the answer then
    comes back, the resolver refused it because DNSSEC validation failed (`dnssec-invalid`), not
    because the servers are unreachable (`dns-servfail`).
    """
    try:
        quick = quick_lookup(resolver, name, rdtype)
        if quick is not None:
            return quick
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN as exc:
        authenticated = False
        responses: dict[object, dns.message.Message] = exc.kwargs.get("responses") or {}
        for response in responses.values():
            authenticated = bool(response.flags & dns.flags.AD)
        return Lookup(
            name, rdtype, "nxdomain", authenticated=authenticated, server=describe_resolver(resolver)
        )
    except dns.resolver.LifetimeTimeout as exc:
        detail = f"{rdtype} {name}: no answer in time ({exc})"
        return failed_lookup(name, rdtype, ProbeError("dns-timeout", detail))
    except dns.resolver.NoNameservers as exc:
        error = ProbeError("dns-servfail", f"{rdtype} {name}: {_servfail_detail(exc)}")
        loop = _cname_loop(resolver, name)
        if loop is not None:  # a resolver SERVFAILs a loop; that is neither an outage nor bogus data
            return failed_lookup(name, rdtype, _loop_error(name, rdtype, loop))
        if check_bogus and _resolves_with_cd(resolver, name, rdtype):
            error = ProbeError(
                "dnssec-invalid",
                f"{rdtype} {name}: the validating resolver {describe_resolver(resolver)} returned SERVFAIL, "
                "and the records resolve with checking disabled (CD): DNSSEC validation failed (bogus)",
            )
        return failed_lookup(name, rdtype, error)
    except dns.resolver.NoResolverConfiguration as exc:
        return failed_lookup(name, rdtype, ProbeError("dns-error", f"no resolver configured: {exc}"))
    except dns.message.ChainTooLong as exc:  # the answer itself chains CNAMEs without end
        loop = _cname_loop(resolver, name) or (name,)
        return failed_lookup(name, rdtype, _loop_error(name, rdtype, loop, f" ({exc})"))
    except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong) as exc:
        return failed_lookup(name, rdtype, ProbeError("dns-error", f"{rdtype} {name}: bad name: {exc}"))
    except dns.exception.DNSException as exc:
        detail = f"{rdtype} {name}: {type(exc).__name__}: {exc}"
        return failed_lookup(name, rdtype, ProbeError("dns-error", detail))
    response = answer.response
    authenticated = bool(response.flags & dns.flags.AD)
    server = _server_of(answer)
    if answer.rrset is None:
        return Lookup(name, rdtype, "nodata", authenticated=authenticated, server=server)
    return Lookup(name, rdtype, "ok", tuple(answer.rrset), authenticated, server)


# --- the quick path (quickdns.py): common answers read from the wire, no Resolver.resolve ----------

_PLAIN: dict[type[dns.resolver.Resolver], bool] = {}


def _plain(cls: type[dns.resolver.Resolver]) -> bool:
    """No class of `cls` but dnspython's and our deadline mixin overrides `resolve` (a resolver class
    with its own `resolve`, e.g. one that counts questions, is asked through it)."""
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = all(
            "resolve" not in vars(base)
            for base in cls.__mro__
            if base not in (dns.resolver.Resolver, _Bounded)
        )
        _PLAIN[cls] = plain
    return plain


@dataclass(frozen=True, slots=True)
class QuickPlan:
    """Questions ready for the quick path: the batch, the servers it goes to (in turn, one per
    attempt, as dnspython rotates over them), how often to resend, until when."""

    batch: quickdns.Batch
    servers: tuple[tuple[str, int], ...]
    attempt: float
    end: float


def quick_plan(
    resolver: dns.resolver.Resolver, questions: Sequence[tuple[str, str]], *, several: bool = False
) -> QuickPlan | None:
    """`questions` as a batch for the resolver's nameservers, or None when the quick path does not
    apply (then every question goes through `lookup`'s full path). `several`: the caller sends to
    each nameserver in turn (the event loop's `adns`), so more than one may be configured."""
    if (
        not quick_path(resolver, several=several)
        or getattr(resolver, "deadline", float("inf")) <= time.monotonic()
    ):
        return None
    try:
        asked = [quickdns.Question.make(name, rdtype) for name, rdtype in questions]
    except dns.exception.DNSException:
        return None  # a bad name: the full path says which
    servers = tuple(
        (str(s), resolver.nameserver_ports.get(str(s), resolver.port)) for s in resolver.nameservers
    )
    end = time.monotonic() + _remaining(resolver, resolver.lifetime)
    return QuickPlan(quickdns.Batch(asked, _header(resolver)), servers, resolver.timeout, end)


def _send(resolver: dns.resolver.Resolver, questions: Sequence[tuple[str, str]]) -> quickdns.Pending | None:
    """Send `questions` now on a blocking socket (None: the quick path does not apply)."""
    plan = quick_plan(resolver, questions)
    if plan is None:
        return None
    server, port = plan.servers[0]
    pending = quickdns.Pending(server, port, plan.batch, plan.attempt, plan.end)
    return None if pending.failed else pending


def _header(resolver: dns.resolver.Resolver) -> quickdns.Header:
    return quickdns.Header(resolver.flags or 0, resolver.edns, resolver.payload, resolver.ednsflags)


def _server_text(server: str, port: int) -> str:
    return f"[{server}]:{port}" if ":" in server else f"{server}:{port}"


def _answered(question: quickdns.Question, wire: bytes | None, server: str) -> Lookup | None:
    if wire is None:
        return None
    answer = quickdns.read_answer(wire, question)
    if answer is None:
        return None
    return Lookup(
        question.name,
        question.rdtype,
        answer.status,
        answer.records,
        answer.authenticated,
        server,
    )


def quick_lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> Lookup | None:
    """`lookup`'s answer for the common cases, or None to go through `resolver.resolve`.

    Raises `dns.resolver.LifetimeTimeout` when the nameserver does not answer within the resolver's
    lifetime (and the deadline of `with_deadline`), as `resolve` would with one server.
    """
    pending = _send(resolver, [(name, rdtype)])
    if pending is None:
        return None
    wire = pending.collect()[0]
    if wire is None and not pending.failed:
        elapsed = time.monotonic() - pending.started
        raise dns.resolver.LifetimeTimeout(timeout=elapsed, errors=[])  # type: ignore[no-untyped-call]
    return _answered(pending.questions[0], wire, _server_text(pending.server, pending.port))


def quick_results(
    batch: quickdns.Batch,
    servers: Sequence[tuple[str, int]],
    *,
    failed: bool,
    started: float,
    indices: Sequence[int] | None = None,
) -> list[Lookup | None]:
    """Each question's `Lookup` from what the quick path read (`servers`: where the batch went, by
    `batch.sources`); None where the full path must ask. `indices`: only those questions.

    A question nobody answered in time (and no socket error) is a `dns-timeout`, as `lookup`
    classifies it: the time for it is spent, it is not asked again."""
    results: list[Lookup | None] = []
    for index in range(len(batch.questions)) if indices is None else indices:
        question, wire, source = batch.questions[index], batch.wires[index], batch.sources[index]
        quick = _answered(question, wire, _server_text(*servers[source]))
        if quick is None and wire is None and not failed:
            elapsed = time.monotonic() - started
            exc = dns.resolver.LifetimeTimeout(timeout=elapsed, errors=[])  # type: ignore[no-untyped-call]
            detail = f"{question.rdtype} {question.name}: no answer in time ({exc})"
            quick = failed_lookup(question.name, question.rdtype, ProbeError("dns-timeout", detail))
        results.append(quick)
    return results


def ask_together(
    resolver: dns.resolver.Resolver, questions: Sequence[tuple[str, str]]
) -> Callable[[], list[Lookup]]:
    """Send `questions` now, all at once; the returned function waits for their `Lookup`s (in order).

    The answers wait in the socket meanwhile, so the caller needs no thread to ask several questions
    at the same time. Whatever the quick path does not read is asked again through `lookup`.
    """
    pending = _send(resolver, questions)

    def collect() -> list[Lookup]:
        if pending is None:
            return [lookup(resolver, name, rdtype) for name, rdtype in questions]
        pending.collect()
        server = ((pending.server, pending.port),)
        found = quick_results(pending.batch, server, failed=pending.failed, started=pending.started)
        return [
            result or lookup(resolver, name, rdtype)
            for result, (name, rdtype) in zip(found, questions, strict=True)
        ]

    return collect


def quick_path(resolver: dns.resolver.Resolver, *, several: bool = False) -> bool:
    """Whether questions through `resolver` take the quick path (`ask_together` needs no threads):
    one nameserver (`--resolver`); with several, dnspython's rotation over them is kept, unless the
    caller rotates itself (`several`)."""
    servers = resolver.nameservers
    return (
        _plain(type(resolver))
        and (len(servers) == 1 or (several and len(servers) > 1))
        and all(isinstance(server, str) for server in servers)
        and resolver.keyring is None
        and not resolver.ednsoptions
    )


def failed_lookup(name: str, rdtype: str, error: ProbeError) -> Lookup:
    """A look-up that produced no answer, for `error`."""
    return Lookup(name, rdtype, "error", error=error, errors=(error,))


def _servfail_detail(exc: dns.resolver.NoNameservers) -> str:
    text = str(exc)
    if "SERVFAIL" in text:
        return "SERVFAIL from the resolver"
    return text


MAX_CNAME_HOPS = 16  # as dnspython's own chain limit


def _cname_loop(resolver: dns.resolver.Resolver, name: str) -> tuple[str, ...] | None:
    """The CNAME chain from `name` when it comes back to a name already seen (None: no loop).

    Asked one link at a time with qtype CNAME, which a resolver answers without chasing the target,
    so a loop it refused to follow (SERVFAIL) can still be shown as one."""
    seen: list[str] = [normalize(name)]
    current = name
    for _ in range(MAX_CNAME_HOPS):
        try:
            answer = resolver.resolve(current, "CNAME", raise_on_no_answer=False, search=False)
        except dns.exception.DNSException:
            return None
        target = next((str(getattr(r, "target", "")) for r in answer.rrset or ()), None)
        if target is None:
            return None
        following = normalize(target)
        if following in seen:
            return (*seen, following)
        seen.append(following)
        current = target
    return tuple(seen)  # longer than any resolver follows: a loop in all but name


def _loop_error(name: str, rdtype: str, loop: Sequence[str], extra: str = "") -> ProbeError:
    return ProbeError(
        "dns-cname-loop",
        f"{rdtype} {name}: the CNAME chain never ends ({' -> '.join(loop)}){extra}; "
        "no record can be found there",
    )


def _resolves_with_cd(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> bool:
    if not resolver.nameservers:
        return False
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags |= dns.flags.CD
    try:
        response = dns.query.udp(
            query,
            str(resolver.nameservers[0]),
            timeout=_remaining(resolver, resolver.timeout),
            port=resolver.port,
        )
    except (dns.exception.DNSException, OSError):
        return False
    # Bogus means the records are there once checking is off: NOERROR with no answer proves nothing.
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def txt_strings(record: dns.rdata.Rdata) -> str:
    """The strings of one TXT record, concatenated (RFC 8461 §3.1, RFC 8460 §3), decoded leniently."""
    strings: tuple[bytes, ...] = getattr(record, "strings", ())
    return b"".join(strings).decode("utf-8", errors="replace")


def resolve_addresses(resolver: dns.resolver.Resolver, host: str) -> tuple[list[str], list[ProbeError]]:
    """A and AAAA for `host` through `resolver` (asked together on the quick path); errors for
    lookups that failed (not for absences)."""
    return addresses_of(ask_together(resolver, [(host, "A"), (host, "AAAA")])())


def addresses_of(results: Sequence[Lookup]) -> tuple[list[str], list[ProbeError]]:
    addresses: list[str] = []
    errors: list[ProbeError] = []
    for result in results:
        if result.ok:
            addresses.extend(str(getattr(r, "address", "")) for r in result.records)
        elif result.error is not None:
            errors.append(result.error)
    return addresses, errors


@dataclass(frozen=True, slots=True)
class MxLookup:
    """The MX hosts of a domain, after RFC 7505 and RFC 5321 §5.1."""

    status: str  # "ok" | "null" (RFC 7505) | "implicit" (RFC 5321 §5.1) | "none" | "nxdomain" | "error"
    records: tuple[tuple[str, int], ...] = ()  # (host, preference), sorted by preference
    authenticated: bool = False
    errors: tuple[ProbeError, ...] = ()


def lookup_mx(resolver: dns.resolver.Resolver, domain: str) -> MxLookup:
    """The mail exchangers of `domain` (see `judge_mx`)."""
    result = lookup(resolver, domain, "MX")
    judged = judge_mx(result)
    if judged is not None:
        return judged
    return implicit_mx(domain, result, *resolve_addresses(resolver, domain))


def judge_mx(result: Lookup) -> MxLookup | None:
    """The MX answer judged; None for NODATA, where the domain's own addresses decide (`implicit_mx`).

    - One MX with preference 0 and exchange "." is a null MX (RFC 7505): the domain accepts no mail.
    - No MX records (NODATA): the domain itself is the implicit MX with preference 0 when it has an
      A or AAAA record (RFC 5321 §5.1); without one, status "none".
    - NXDOMAIN: status "nxdomain". SERVFAIL/timeout: status "error", never an absence.
    """
    if result.status == "error":
        return MxLookup("error", errors=result.errors)
    if result.status == "nxdomain":
        return MxLookup("nxdomain", authenticated=result.authenticated)
    if not result.ok:
        return None
    records = sorted(
        (
            (normalize(str(getattr(r, "exchange", ""))), int(getattr(r, "preference", 0)))
            for r in result.records
        ),
        key=lambda hp: (hp[1], hp[0]),
    )
    if any(host == "" for host, _ in records):
        if len(records) == 1 and records[0][1] == 0:
            return MxLookup("null", tuple(records), result.authenticated)
        return MxLookup(
            "ok",
            tuple((h, p) for h, p in records if h),
            result.authenticated,
            (
                ProbeError(
                    "mx-invalid",
                    'a null MX (".") must be the only MX record, with preference 0 (RFC 7505 §3)',
                ),
            ),
        )
    return MxLookup("ok", tuple(records), result.authenticated)


def implicit_mx(domain: str, result: Lookup, addresses: list[str], errors: list[ProbeError]) -> MxLookup:
    """NODATA for MX: RFC 5321 §5.1 implicit MX when the domain has an address."""
    if addresses:
        return MxLookup("implicit", ((normalize(domain), 0),), result.authenticated)
    if errors:
        return MxLookup("error", errors=tuple(errors))
    return MxLookup("none", authenticated=result.authenticated)
