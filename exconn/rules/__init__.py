"""The rule registry. Each module under exconn.rules declares its rules with `@rule`."""

from __future__ import annotations

import importlib

# Modules that declare rules; imported lazily so `import exconn` stays cheap.
RULE_MODULES = (
    "exconn.rules.send",
    "exconn.rules.receive",
    "exconn.rules.exo",
    "exconn.rules.inbound",
    "exconn.rules.outbound",
    "exconn.rules.evidence",
    "exconn.rules.evidence_inbound",
)


def load_all() -> None:
    for name in RULE_MODULES:
        importlib.import_module(name)
