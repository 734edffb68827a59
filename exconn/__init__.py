"""exconn: is mail between your Exchange servers and the internet really protected by TLS?

The public API is small: load an organisation from exports (or collect it live), observe the
domains' posture, evaluate the rules, render the report, write the fix. Everything else is
private to its module.

    import datetime as dt
    from pathlib import Path

    import exconn

    now = dt.datetime.now(dt.UTC)
    org = exconn.load(["snapshot/"])
    report = exconn.evaluate(exconn.Context(org, now))
    exconn.write_fix(report, org.sources, Path("fix"), generated_at=now)
    exconn.write_dns(report, Path("fix"), generated_at=now)  # with a posture in the Context

The names are imported on first use, so `import exconn` loads neither lxml, dnspython nor pypsrp,
and builds no client (resolvers, HTTP and PSRP sessions are passed in by the caller).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from exconn._version import __version__

if TYPE_CHECKING:
    from exconn.errors import ExconnError, InputError, UsageError
    from exconn.model import Organization
    from exconn.posture.dns import make_resolver
    from exconn.posture.facts import DomainPosture, PostureReport
    from exconn.posture.scan import ScanOptions, scan_domains
    from exconn.remediate.dns import write_dns
    from exconn.remediate.script import write_fix
    from exconn.render import Format, RunInfo
    from exconn.rules.base import Context, Finding, Report, Rule, Severity, Skip, all_rules, evaluate
    from exconn.sources.files import load
    from exconn.sources.psrp import collect
    from exconn.sources.psrp_adapt import to_organization
    from exconn.sources.psrp_session import ConnectionOptions

# Public name -> the module that defines it. No function is named like a subpackage: importing
# `exconn.render` binds that name to the module, so the renderer is `exconn.render.render`.
_EXPORTS = {
    "load": "exconn.sources.files",
    "ConnectionOptions": "exconn.sources.psrp_session",
    "collect": "exconn.sources.psrp",
    "to_organization": "exconn.sources.psrp_adapt",
    "Organization": "exconn.model",
    "make_resolver": "exconn.posture.dns",
    "ScanOptions": "exconn.posture.scan",
    "scan_domains": "exconn.posture.scan",
    "DomainPosture": "exconn.posture.facts",
    "PostureReport": "exconn.posture.facts",
    "Context": "exconn.rules.base",
    "evaluate": "exconn.rules.base",
    "all_rules": "exconn.rules.base",
    "Report": "exconn.rules.base",
    "Finding": "exconn.rules.base",
    "Skip": "exconn.rules.base",
    "Rule": "exconn.rules.base",
    "Severity": "exconn.rules.base",
    "Format": "exconn.render",
    "RunInfo": "exconn.render",
    "write_fix": "exconn.remediate.script",
    "write_dns": "exconn.remediate.dns",
    "ExconnError": "exconn.errors",
    "InputError": "exconn.errors",
    "UsageError": "exconn.errors",
}

__all__ = [
    "ConnectionOptions",
    "Context",
    "DomainPosture",
    "ExconnError",
    "Finding",
    "Format",
    "InputError",
    "Organization",
    "PostureReport",
    "Report",
    "Rule",
    "RunInfo",
    "ScanOptions",
    "Severity",
    "Skip",
    "UsageError",
    "__version__",
    "all_rules",
    "collect",
    "evaluate",
    "load",
    "make_resolver",
    "scan_domains",
    "to_organization",
    "write_dns",
    "write_fix",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'exconn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
