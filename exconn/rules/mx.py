"""The receive connectors behind our MX hosts: which answer as an MX name, and what each gets wrong.

The SMTP probe reaches one server per MX name; the export shows every server behind it. EXC-W002
reports these problems, and the proposed mode (`exconn.rules.policy`) stays testing while any exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from exconn.fix import Fix
from exconn.model import UNKNOWN, AuthMechanism, ExchangeCertificate, ReceiveConnector
from exconn.names import normalize
from exconn.posture.facts import DomainPosture
from exconn.rules.base import CannotJudge, Context, Target
from exconn.rules.certs import (
    certificate_name_of,
    certificates_of_server,
    expired,
    names_for_senders,
    receive_selection,
    usable_for_name,
)
from exconn.rules.helpers import (
    flags_value,
    is_anonymous_smtp,
    set_fix,
)
from exconn.scope import is_exo_mx


def _connector_certificates(
    ctx: Context, c: ReceiveConnector, host: str
) -> tuple[list[ExchangeCertificate], str] | None:
    """The certificates the connector may present (`exconn.rules.certs`: the one selected, or every
    one a TlsCertificateName pins, as the store order decides), and what selected them; None: cannot
    tell. The MX name stands in for a server FQDN the export lacks."""
    found = receive_selection(ctx.org, c, ctx.now, fqdn_default=host)
    if isinstance(found, str):
        return None
    if found.certificate is None:
        return [], found.how
    chosen = list(found.candidates) if c.tls_certificate_name is not None else [found.certificate]
    return chosen, found.how


def _serves(ctx: Context, c: ReceiveConnector, host: str) -> bool | None:
    """Does this connector answer for MX `host`: Fqdn equal, or its certificate names the host?"""
    anonymous = is_anonymous_smtp(c)
    if anonymous is None or c.enabled is UNKNOWN or c.fqdn is UNKNOWN:
        return None
    if not anonymous or c.enabled is False:
        return False
    if c.fqdn is not None and normalize(c.fqdn) == host:
        return True
    if c.tls_certificate_name is UNKNOWN or c.tls_certificate_name is None:
        return False
    selected = _connector_certificates(ctx, c, host)
    if selected is None:
        return None
    return any(names_for_senders(x, host) for x in selected[0])


def _replacement(c: ReceiveConnector, host: str, ctx: Context) -> Fix | None:
    """Set-ReceiveConnector -TlsCertificateName naming a current SMTP certificate for `host` on the
    connector's server, when the export has one and the connector names another."""
    if c.tls_certificate_name is UNKNOWN or c.tls_certificate_name is None:
        return None
    certs = certificates_of_server(ctx.org, c.server) or ()
    good = [x for x in usable_for_name(certs, host, ctx.now) if names_for_senders(x, host)]
    name = certificate_name_of(good[0]) if good else None
    if name is None:
        return None
    return set_fix(
        "Set-ReceiveConnector", c.identity, [("TlsCertificateName", name, c.tls_certificate_name.raw)]
    )


@dataclass(frozen=True, slots=True)
class ConnectorProblems:
    starttls_off: bool  # AuthMechanism lacks Tls
    certificate: str | None  # what is wrong with the certificate it presents
    fixes: tuple[Fix, ...]

    def describe(self) -> list[str]:
        texts = ["AuthMechanism lacks Tls, so STARTTLS is never offered"] if self.starttls_off else []
        return texts + ([self.certificate] if self.certificate else [])


def connector_problems(ctx: Context, c: ReceiveConnector, host: str) -> ConnectorProblems | CannotJudge:
    if c.auth_mechanism is UNKNOWN:
        return CannotJudge(Target.of(c), "AuthMechanism not in the export")
    selected = _connector_certificates(ctx, c, host)
    if selected is None:
        return CannotJudge(
            Target.of(c), "the certificate this connector presents cannot be told from the export"
        )
    fixes: list[Fix] = []
    starttls_off = not c.auth_mechanism & AuthMechanism.TLS
    if starttls_off:
        mech = c.auth_mechanism
        fix = set_fix(
            "Set-ReceiveConnector",
            c.identity,
            [("AuthMechanism", flags_value(mech | AuthMechanism.TLS), flags_value(mech))],
        )
        fixes += [fix] if fix is not None else []
    certs, how = selected
    current = [x for x in certs if expired(x, ctx.now) is False]
    problem: str | None = None
    if not certs:
        problem = f"{how} selects no exported certificate: Exchange offers no STARTTLS without one"
    elif not current:
        problem = f"{how} selects only expired certificates, which senders that validate refuse"
    elif not any(names_for_senders(x, host) for x in current):
        problem = f"{how} selects a certificate that does not name {host}"
    if problem is not None and (better := _replacement(c, host, ctx)) is not None:
        fixes.append(better)
    return ConnectorProblems(starttls_off, problem, tuple(fixes))


def serving_connectors(ctx: Context, host: str) -> tuple[list[ReceiveConnector], list[ReceiveConnector]]:
    """The receive connectors that answer as MX `host`, and those that cannot be told either way."""
    serving: list[ReceiveConnector] = []
    undecided: list[ReceiveConnector] = []
    for c in ctx.org.receive_connectors:
        serves = _serves(ctx, c, host)
        if serves is None:
            undecided.append(c)
        elif serves:
            serving.append(c)
    return serving, undecided


def connector_failures(ctx: Context, p: DomainPosture) -> list[str] | None:
    """EXC-W002's judgement of the receive connectors behind `p`'s Exchange MX hosts, as lines
    "host: connector: problem" ([]: none found). None: a connector that answers (or may answer) for
    an MX cannot be judged from the export.

    The probe reaches one server per MX name; the export shows every server behind it, so a policy
    must not go to enforce while one of them would fail TLS (missing facts never pass).
    """
    failures: list[str] = []
    unknown = False
    for host in p.mx.hosts:
        if is_exo_mx(host):
            continue  # Microsoft's TLS, not our connectors'
        serving, undecided = serving_connectors(ctx, host)
        unknown = unknown or bool(undecided)
        for c in serving:
            found = connector_problems(ctx, c, host)
            if isinstance(found, CannotJudge):
                unknown = True
            elif problems := found.describe():
                failures.append(f"{host}: {c.identity}: " + "; ".join(problems))
    if failures:
        return failures
    return None if unknown else []
