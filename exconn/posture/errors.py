"""The one error shape every posture probe reports.

`type` uses the RFC 8460 §4.3 result-type names where one fits (`starttls-not-supported`,
`certificate-host-mismatch`, `certificate-expired`, `certificate-not-trusted`, `validation-failure`,
`tlsa-invalid`, `dnssec-invalid`, `dane-required`, `sts-policy-fetch-error`, `sts-policy-invalid`,
`sts-webpki-invalid`), so admins see the same words here and in the TLS reports they receive. Other
types are exconn's own (`dns-timeout`, `dns-servfail`, `connect-failed`, `timeout`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeError:
    type: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "detail": self.detail}
