"""The audit pipeline: load -> observe -> evaluate -> render and write, from typed options.

The command line parses arguments into `AuditOptions` and prints what `run` returns; a script can
call `run` the same way. Nothing here reads `argparse` or prints: messages for the user come back
in `AuditResult.notes`.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from exconn.errors import InputError, UsageError
from exconn.model import Organization
from exconn.names import normalize
from exconn.output import check_writable_folder, emit
from exconn.posture.facts import DaneStatus, MtaStsStatus
from exconn.render import Format, RunInfo, write
from exconn.render.common import Baseline
from exconn.rules.base import Context, Report, Severity, evaluate

if TYPE_CHECKING:
    from exconn.audit_inputs import SplitPaths
    from exconn.diff import Diff
    from exconn.evidence.model import Evidence
    from exconn.posture.facts import DomainPosture
    from exconn.posture.options import NetworkOptions
    from exconn.sources.psrp_session import ConnectionOptions

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class LiveSource:
    """Collect over PowerShell remoting instead of reading files."""

    hosts: tuple[str, ...]
    connection: ConnectionOptions


@dataclass(frozen=True, slots=True)
class Observation:
    """How to observe the domains' posture; every field None means "the default"."""

    domains_file: str | None = None
    partners_file: str | None = None
    resolver: str | None = None
    ca_file: str | None = None
    timeout: float | None = None
    smtp_port: int | None = None
    https_port: int | None = None

    def given(self) -> list[str]:
        """The options set, as the command line spells them (for messages)."""
        names = ("domains", "partners", "resolver", "ca_file", "timeout", "smtp_port", "https_port")
        values = (
            self.domains_file,
            self.partners_file,
            self.resolver,
            self.ca_file,
            self.timeout,
            self.smtp_port,
            self.https_port,
        )
        return [f"--{n.replace('_', '-')}" for n, v in zip(names, values, strict=True) if v is not None]

    def network(self) -> NetworkOptions:
        from exconn.posture.options import NetworkOptions

        return NetworkOptions.checked(
            resolver_address=self.resolver,
            ca_file=self.ca_file,
            timeout=self.timeout,
            smtp_port=self.smtp_port,
            https_port=self.https_port,
        )


@dataclass(frozen=True, slots=True)
class AuditOptions:
    paths: tuple[str, ...] = ()
    live: LiveSource | None = None
    offline: bool = False
    posture_file: str | None = None
    observation: Observation = field(default_factory=Observation)
    format: Format = Format.TABLE
    output: str | None = None
    fail_on: Severity = Severity.HIGH
    fix_out: str | None = None
    tlsrpt_rua: str | None = None
    # --evidence FILE: aggregates saved by `exconn evidence --save`, replayed.
    evidence_files: tuple[str, ...] = ()
    # Without --partners, this many of the tracking logs' top recipient domains are observed.
    top_partners: int = 50
    # --baseline OLD.json: write what changed since that audit (new, resolved, changed) instead
    # of the whole report; only new findings decide the exit status.
    baseline: str | None = None


@dataclass(frozen=True, slots=True)
class AuditResult:
    report: Report
    org: Organization
    exit_code: int
    written: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()  # one line each, for stderr


def check(options: AuditOptions) -> None:
    """Contradictions among the options, before any work. Raises UsageError."""
    given = options.observation.given()
    if options.live is not None and options.paths:
        raise UsageError("give either export PATHs or --server, not both")
    if options.live is not None and options.offline:
        raise UsageError("--offline promises no network use; it cannot be combined with --server")
    if options.top_partners < 0:
        raise UsageError("--top-partners must be 0 or more")
    if options.live is None and not options.paths:
        raise UsageError("nothing to audit: give export files or folders (or --server HOST)")
    if options.offline and given:
        raise UsageError(f"--offline promises no network use; it cannot be combined with {', '.join(given)}")
    if options.posture_file and given:
        raise UsageError(f"--posture replays a saved observation; {', '.join(given)} would observe anew")
    if options.output is not None and (why := check_writable_folder(options.output)) is not None:
        raise InputError(options.output, f"cannot write the report: {why}")
    if options.tlsrpt_rua is not None:
        from exconn.remediate.dns import DnsFixError, check_rua

        try:
            check_rua(options.tlsrpt_rua)
        except DnsFixError as exc:
            raise UsageError(str(exc)) from None


def _split(options: AuditOptions) -> SplitPaths:
    from exconn.audit_inputs import SplitPaths, split_paths

    if options.live is not None:
        return SplitPaths((), ())
    return split_paths(options.paths)


def load_evidence(
    options: AuditOptions, logs: tuple[str, ...], warn: Callable[[str], None]
) -> Evidence | None:
    """The evidence: the logs and reports among the paths, read, and the --evidence files,
    replayed; merged by addition. None when neither was given."""
    if not logs and not options.evidence_files:
        return None
    from exconn.evidence.accumulate import merge
    from exconn.evidence.reduce import SKIPPED, reduce_paths
    from exconn.evidence.saved import load as load_saved

    parts = [load_saved(f) for f in options.evidence_files]
    if logs:
        parts.append(reduce_paths(list(logs)))
    ev = merge(*parts)
    unknown = sum(1 for n in ev.notes if n.endswith(SKIPPED))
    for note in ev.notes:
        if not note.endswith(SKIPPED):
            warn(f"evidence: {note}")
    if unknown:
        warn(f"evidence: {unknown} file(s) are not logs or reports exconn reads, skipped")
    return ev


def _load_org(options: AuditOptions, exports: list[str], warn: Callable[[str], None]) -> Organization:
    if options.live is not None:
        from exconn.sources.psrp import run_collection
        from exconn.sources.psrp_adapt import to_organization

        collection = run_collection(options.live.hosts, options.live.connection, warn=warn)
        return to_organization(collection)
    from exconn.sources.files import load as load_files

    if not exports:
        raise UsageError("nothing to audit: the paths hold logs or reports but no exports of the connectors")
    return load_files(exports)


def observe(
    options: AuditOptions,
    org: Organization,
    evidence: Evidence | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, DomainPosture] | None:
    """The posture to cross-check with: replayed (--posture), observed, or None with --offline.

    A resolver without the public view (our own domain NXDOMAIN or failing, or every domain) marks
    those domains unobserved (posture/view.py), so the rules draw nothing from them; `warn` says so."""
    if options.posture_file:
        from exconn.posture.saved import load_report

        return {p.domain: p for p in load_report(options.posture_file).domains}
    if options.offline:
        return None
    from exconn.posture.scan import scan_domains
    from exconn.targets import our_domains, partner_domains

    obs = options.observation
    network = obs.network()
    ours = our_domains(org, obs.domains_file)
    observed = _top_recipients(org, evidence, options.top_partners) if obs.partners_file is None else ()
    domains = [*ours, *partner_domains(org, obs.partners_file, ours=ours, observed=observed)]
    if not domains:
        return {}
    from exconn.posture.dns import describe_resolver
    from exconn.posture.view import judge_view

    resolver = network.resolver()
    report = scan_domains(domains, resolver=resolver, options=network.scan_options())
    view = judge_view(report, resolver=describe_resolver(resolver), ours=ours)
    if view.message is not None and warn is not None:
        warn(f"posture: {view.message}")
    return {p.domain: p for p in view.report.domains}


def run(
    options: AuditOptions,
    stdout: TextIO | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    now: dt.datetime | None = None,
) -> AuditResult:
    """The whole audit. Raises ExconnError (UsageError, InputError) for what the user can fix."""
    check(options)
    now = now or dt.datetime.now(dt.UTC)
    notes: list[str] = []
    baseline = _baseline(options)  # read before the work: a bad file is said at once
    split = _split(options)
    org = _load_org(options, list(split.exports), warn or notes.append)
    evidence = load_evidence(options, split.evidence, warn or notes.append)
    posture = observe(options, org, evidence, warn or notes.append)
    ctx = Context(
        org=org,
        now=now,
        posture=posture or {},
        offline=posture is None,
        tlsrpt_rua=options.tlsrpt_rua,
        evidence=evidence,
    )
    report = evaluate(ctx)
    info = RunInfo(
        generated_at=now,
        sources=org.sources,
        fail_on=options.fail_on,
        offline=options.offline,
        posture_file=options.posture_file,
        fix_out=options.fix_out,
        marks=_marks(posture or {}),
        evidence=evidence,
        own_domains=_own_domains(org),
    )
    changes: Diff | None = None
    if baseline is not None and options.format in (Format.SARIF, Format.HTML):
        # The whole report, each finding marked new/updated/unchanged against the baseline.
        changes = _since(baseline, report, info)
        info = replace(info, baseline=_marked(changes, options.baseline or ""))
        emit(lambda out: write(report, org, info, options.format, out), options.output, stdout or sys.stdout)
    elif baseline is not None:
        from exconn.diff import write_diff

        changes = d = _since(baseline, report, info)
        emit(
            lambda out: write_diff(d, options.format.value, options.fail_on, out),
            options.output,
            stdout or sys.stdout,
        )
    else:
        emit(lambda out: write(report, org, info, options.format, out), options.output, stdout or sys.stdout)
    written: list[Path] = []
    if options.fix_out:
        from exconn.remediate.dns import write_dns
        from exconn.remediate.script import write_fix

        written += write_fix(report, org.sources, Path(options.fix_out), generated_at=now)
        # The DNS side comes from the findings too (EXC-W…, with a posture only).
        dns_fix = write_dns(report, Path(options.fix_out), generated_at=now)
        written += dns_fix.written
        notes += [f"dns: {note}" for note in dns_fix.notes]
        notes.append(f"wrote {', '.join(str(w) for w in written)}")
    worst = changes.worst_new() if changes is not None else report.worst()
    code = EXIT_FINDINGS if worst is not None and worst >= options.fail_on else EXIT_OK
    return AuditResult(report, org, code, tuple(written), tuple(notes))


def _baseline(options: AuditOptions) -> dict[str, Any] | None:
    if options.baseline is None:
        return None
    from exconn.diff import load_report

    return load_report(options.baseline)


def _marked(changes: Diff, path: str) -> Baseline:
    from exconn.diff import key_of

    states = {key_of(e): "new" for e in changes.new} | {key_of(n): "updated" for _, n in changes.changed}
    return Baseline(path, states, changes.resolved)


def _since(baseline: dict[str, Any], report: Report, info: RunInfo) -> Diff:
    from exconn.diff import compare
    from exconn.render.common import finding_json

    now = {
        "generated_at": info.generated_at.isoformat(),
        "sources": list(info.sources),
        "findings": [finding_json(f) for f in report.findings],
    }
    return compare(baseline, now)


def _own_domains(org: Organization) -> tuple[str, ...]:
    from exconn.scope import accepted_names

    return tuple(sorted(accepted_names(org)))


def _top_recipients(org: Organization, evidence: Evidence | None, top: int) -> tuple[str, ...]:
    """The tracking logs' most-mailed recipient domains (not ours), the partners worth observing."""
    if evidence is None or top == 0:
        return ()
    from exconn.scope import accepted_names

    own = tuple(accepted_names(org))
    return tuple(r.domain for r in evidence.recipient_domains(own)[:top])


def _marks(posture: Mapping[str, DomainPosture]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """What protects mail to each observed domain beyond opportunistic TLS, for the mail flow."""
    out = []
    for domain, p in sorted(posture.items()):
        policy = p.mta_sts.policy if p.mta_sts.status == MtaStsStatus.VALID else None
        marks = (("MTA-STS enforce",) if policy is not None and policy.mode == "enforce" else ()) + (
            ("DANE",) if p.dane.status in (DaneStatus.VALID, DaneStatus.UNVERIFIED) else ()
        )
        if marks:
            out.append((normalize(domain), marks))
    return tuple(out)
