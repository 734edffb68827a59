"""How the posture scan reaches the network: resolver, trust store, timeout, ports; for `exconn
posture` and the observation of `exconn audit` alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exconn.errors import InputError, UsageError

if TYPE_CHECKING:
    import dns.resolver

    from exconn.posture.scan import ScanOptions

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    """What `--resolver`, `--ca-file`, `--timeout` (and the hidden test ports) mean, for `exconn
    posture` and for the observation of `exconn audit` alike."""

    resolver_address: str | None = None
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    smtp_port: int = 25
    https_port: int = 443

    @classmethod
    def checked(
        cls,
        *,
        resolver_address: str | None = None,
        ca_file: str | None = None,
        timeout: float | None = None,
        smtp_port: int | None = None,
        https_port: int | None = None,
    ) -> NetworkOptions:
        """The options, checked; None means the default. Raises UsageError or InputError."""
        timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        if not (timeout > 0 and math.isfinite(timeout)):  # `nan > 0` is False too
            raise UsageError(f"--timeout must be a number of seconds more than 0, not {timeout}")
        if ca_file is not None:
            if not Path(ca_file).is_file():
                raise InputError(ca_file, "CA file not found")
            from exconn.posture.certs import TrustStore  # cryptography: only when a file is named

            unusable = TrustStore.load(ca_file).error
            if unusable is not None:
                raise InputError(ca_file, unusable)
        return cls(
            resolver_address=resolver_address,
            ca_file=ca_file,
            timeout=timeout,
            smtp_port=smtp_port if smtp_port is not None else 25,
            https_port=https_port if https_port is not None else 443,
        )

    def resolver(self) -> dns.resolver.Resolver:
        """The resolver every lookup goes through. Raises UsageError."""
        from exconn.posture.dns import ResolverAddressError, make_resolver

        try:
            return make_resolver(self.resolver_address, timeout=self.timeout)
        except ResolverAddressError as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:  # e.g. no /etc/resolv.conf: the user's machine, not a bug
            raise UsageError(f"cannot set up a resolver: {exc}") from None

    def scan_options(self, *, smtp: bool = True) -> ScanOptions:
        # Imported here: `exconn posture`'s parser reads DEFAULT_TIMEOUT, and the scanner's
        # dnspython and cryptography are not needed to build it.
        from exconn.posture.scan import ScanOptions

        return ScanOptions(
            timeout=self.timeout,
            ca_file=self.ca_file,
            smtp=smtp,
            smtp_port=self.smtp_port,
            https_port=self.https_port,
        )
