"""Evidence: what really happened on the wire, from logs and reports (a source floor).

Reads Exchange SMTP protocol logs, message tracking logs, TLS-RPT reports and MTA-STS policy-host
access logs, and reduces them to typed, mergeable aggregates (`Evidence`). Imports nothing above
the low modules: the rules read its aggregates, it never reads theirs.
"""

from exconn.evidence.accumulate import merge
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
from exconn.evidence.reduce import reduce_file, reduce_paths
from exconn.evidence.saved import dumps, load

__all__ = [
    "CertificateSeen",
    "ConnectorCoverage",
    "Coverage",
    "Evidence",
    "PolicyFetch",
    "RecipientDomain",
    "TlsFailure",
    "TlsReport",
    "Traffic",
    "dumps",
    "load",
    "merge",
    "reduce_file",
    "reduce_paths",
]
