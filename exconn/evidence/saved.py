"""The `exconn-evidence` save format: the aggregates as JSON, versioned, merging by addition.

    {"format": "exconn-evidence", "version": 1, "traffic": [...], "tls_reports": [...], ...}

Files saved on each server (or by each worker of a cluster) are merged by `merge(load(a),
load(b))`: every count adds, sets unite, first/last widen. The loader checks every field's type,
so a hand-edited or foreign file is refused with one line naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exconn.errors import InputError
from exconn.evidence.model import (
    CertificateSeen,
    ConnectorCoverage,
    Coverage,
    Evidence,
    PolicyFetch,
    RecipientDomain,
    TlsFailure,
    TlsReport,
    Traffic,
)
from exconn.output import POSTURE_FILE_LIMIT, read_small_file

FORMAT = "exconn-evidence"
VERSION = 1


def to_doc(ev: Evidence) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "traffic": [
            {
                **{k: getattr(t, k) for k in _TRAFFIC_SCALARS},
                "tls_versions": dict(t.tls_versions),
                "refusals": dict(t.refusals),
                "certificates": [_cert_doc(c) for c in t.certificates],
            }
            for t in ev.traffic
        ],
        "tls_reports": [
            {
                **{k: getattr(r, k) for k in _REPORT_SCALARS},
                "policy_strings": list(r.policy_strings),
                "mx_hosts": list(r.mx_hosts),
                "failures": [{k: getattr(f, k) for k in _FAILURE_FIELDS} for f in r.failures],
            }
            for r in ev.tls_reports
        ],
        "policy_fetches": [
            {**{k: getattr(f, k) for k in _FETCH_SCALARS}, "status": dict(f.status)}
            for f in ev.policy_fetches
        ],
        "recipients": [
            {"domain": r.domain, "messages": r.messages, "connectors": list(r.connectors)}
            for r in ev.recipients
        ],
        "own_domains": list(ev.own_domains),
        "local_addresses": dict(ev.local_addresses),
        "coverage": {
            "files": ev.coverage.files,
            "bad_lines": ev.coverage.bad_lines,
            "servers": list(ev.coverage.servers),
            "connectors": [
                {
                    "direction": c.direction,
                    "server": c.server,
                    "connector": c.connector,
                    "sessions": c.sessions,
                    "days": list(c.days),
                }
                for c in ev.coverage.connectors
            ],
            "days": list(ev.coverage.days),
            "tracking_connectors": list(ev.coverage.tracking_connectors),
        },
        "notes": list(ev.notes),
    }


def _cert_doc(c: CertificateSeen) -> dict[str, Any]:
    return {
        "thumbprint": c.thumbprint,
        "subject": c.subject,
        "issuer": c.issuer,
        "not_after": c.not_after,
        "sessions": c.sessions,
    }


_TRAFFIC_SCALARS = (
    "direction",
    "server",
    "connector",
    "remote_ip",
    "remote_host",
    "remote_domain",
    "local_ip",
    "sessions",
    "tls",
    "plaintext",
    "tls_failed",
    "starttls_offered",
    "plaintext_offered",
    "ehlo_seen",
    "first",
    "last",
)
_REPORT_SCALARS = (
    "organization",
    "report_id",
    "start",
    "end",
    "policy_domain",
    "policy_type",
    "successful",
    "failed",
)
_FAILURE_FIELDS = (
    "result_type",
    "receiving_mx_hostname",
    "receiving_ip",
    "sending_mta_ip",
    "failure_reason_code",
    "count",
)
_FETCH_SCALARS = ("host", "fetcher", "attributed_by", "requests", "first", "last")
_INTS = {
    "sessions",
    "tls",
    "plaintext",
    "tls_failed",
    "starttls_offered",
    "plaintext_offered",
    "ehlo_seen",
    "successful",
    "failed",
    "count",
    "requests",
    "messages",
    "files",
    "bad_lines",
}
_OPTIONAL = {
    "remote_host",
    "remote_domain",
    "policy_domain",
    "receiving_mx_hostname",
    "receiving_ip",
    "sending_mta_ip",
    "failure_reason_code",
    "issuer",
    "not_after",
}


class _Bad(ValueError):
    pass


def _fields(obj: Any, names: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is not an object")
    out = {}
    for name in names:
        value = obj.get(name)
        if name in _INTS:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif name in _OPTIONAL:
            ok = value is None or isinstance(value, str)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise _Bad(f"{where}: `{name}` is {value!r}")
        out[name] = value
    return out


def _list(obj: Any, name: str, where: str) -> list[Any]:
    value = obj.get(name, []) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise _Bad(f"{where}: `{name}` is not a list")
    return value


def _strs(obj: Any, name: str, where: str) -> tuple[str, ...]:
    value = _list(obj, name, where)
    if not all(isinstance(v, str) for v in value):
        raise _Bad(f"{where}: `{name}` is not a list of strings")
    return tuple(value)


def _counts(obj: Any, name: str, where: str) -> tuple[tuple[str, int], ...]:
    value = obj.get(name, {})
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()
    ):
        raise _Bad(f"{where}: `{name}` is not a map of counts")
    return tuple(sorted((str(k), v) for k, v in value.items()))


def from_doc(doc: Any) -> Evidence:
    """Raises ValueError naming the first field that is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _Bad(f'not an "{FORMAT}" file (written by `exconn evidence --save`)')
    if doc.get("version") != VERSION:
        raise _Bad(f"version {doc.get('version')!r}; this exconn reads version {VERSION}")
    traffic = []
    for n, t in enumerate(_list(doc, "traffic", "file"), 1):
        w = f"traffic {n}"
        f = _fields(t, _TRAFFIC_SCALARS, w)
        certs = tuple(
            CertificateSeen(**_fields(c, ("thumbprint", "subject", "issuer", "not_after", "sessions"), w))
            for c in _list(t, "certificates", w)
        )
        traffic.append(
            Traffic(
                **f,
                tls_versions=_counts(t, "tls_versions", w),
                certificates=certs,
                refusals=_counts(t, "refusals", w),
            )
        )
    reports = []
    for n, r in enumerate(_list(doc, "tls_reports", "file"), 1):
        w = f"tls report {n}"
        f = _fields(r, _REPORT_SCALARS, w)
        fails = tuple(TlsFailure(**_fields(x, _FAILURE_FIELDS, w)) for x in _list(r, "failures", w))
        reports.append(
            TlsReport(
                **f,
                policy_strings=_strs(r, "policy_strings", w),
                mx_hosts=_strs(r, "mx_hosts", w),
                failures=fails,
            )
        )
    fetches = [
        PolicyFetch(**_fields(p, _FETCH_SCALARS, f"fetch {n}"), status=_counts(p, "status", f"fetch {n}"))
        for n, p in enumerate(_list(doc, "policy_fetches", "file"), 1)
    ]
    recipients = [
        RecipientDomain(
            **_fields(r, ("domain", "messages"), f"recipient {n}"),
            connectors=_strs(r, "connectors", "recipient"),
        )
        for n, r in enumerate(_list(doc, "recipients", "file"), 1)
    ]
    cov = doc.get("coverage", {})
    base = _fields(cov, ("files", "bad_lines"), "coverage")
    conns = tuple(
        ConnectorCoverage(
            **_fields(c, ("direction", "server", "connector", "sessions"), "coverage connector"),
            days=_strs(c, "days", "coverage connector"),
        )
        for c in _list(cov, "connectors", "coverage")
    )
    local = doc.get("local_addresses", {})
    if not isinstance(local, dict) or not all(isinstance(v, str) for v in local.values()):
        raise _Bad("`local_addresses` is not a map of server names")
    return Evidence(
        traffic=tuple(traffic),
        tls_reports=tuple(reports),
        policy_fetches=tuple(fetches),
        recipients=tuple(recipients),
        own_domains=_strs(doc, "own_domains", "file"),
        local_addresses=tuple(sorted(local.items())),
        coverage=Coverage(
            files=base["files"],
            bad_lines=base["bad_lines"],
            servers=_strs(cov, "servers", "coverage"),
            connectors=conns,
            days=_strs(cov, "days", "coverage"),
            tracking_connectors=_strs(cov, "tracking_connectors", "coverage"),
        ),
        notes=_strs(doc, "notes", "file"),
    )


def dumps(ev: Evidence) -> bytes:
    return (json.dumps(to_doc(ev), indent=1, ensure_ascii=False) + "\n").encode()


def load(path: str | Path) -> Evidence:
    """A saved aggregate. Raises InputError (one line) for anything it cannot read."""
    try:
        data = read_small_file(path, POSTURE_FILE_LIMIT)
        return from_doc(json.loads(data.decode("utf-8-sig")))
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not an exconn-evidence JSON file: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise InputError(path, f"not a valid exconn-evidence file: {exc}") from None


def is_saved(head: bytes) -> bool:
    return b'"exconn-evidence"' in head[:4096]
