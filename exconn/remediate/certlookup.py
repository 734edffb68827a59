"""The apply-time certificate lookup of remediation.ps1 (`exconn.fix.CertificateLookup`).

When certificates were not exported, a fix that pins TlsCertificateName cannot name the certificate:
the script finds it on each server when it runs, with the same test the rules use for a fix (the
name, exactly or by a wildcard at any depth; SMTP enabled; valid now; not self-signed), and throws
unless exactly one issuer+subject matches on every server: the change then counts as failed.
"""

from __future__ import annotations

import exconn.pwsh as pwsh
from exconn.fix import LOOKED_UP_CERTIFICATE, SetCommand

FIND_CERTIFICATE = r"""
function Find-ExconnCertificate {
    # The one <I>issuer<S>subject of the valid SMTP certificate for $Domain on every server.
    param([string[]]$Server, [string]$Domain)
    $now = Get-Date
    $names = @()
    foreach ($one in $Server) {
        $found = @(Get-ExchangeCertificate -Server $one -ErrorAction Stop | Where-Object {
            $cert = $_
            $named = @($cert.CertificateDomains | Where-Object {
                $d = ([string]$_).ToLowerInvariant()
                ($d -eq $Domain) -or ($d.StartsWith('*.') -and $Domain.EndsWith($d.Substring(1)))
            })
            ($named.Count -gt 0) -and ([string]$cert.Services -match 'SMTP') -and
                (-not $cert.IsSelfSigned) -and ($cert.NotBefore -le $now) -and ($cert.NotAfter -gt $now)
        } | Sort-Object NotBefore -Descending)
        if ($found.Count -eq 0) {
            throw ('no valid SMTP certificate for ' + $Domain + ' on ' + $one)
        }
        Write-Host ('Certificate for ' + $Domain + ' on ' + $one + ': ' + $found[0].Thumbprint)
        $names += @($found | ForEach-Object { '<I>' + $_.Issuer + '<S>' + $_.Subject })
    }
    $distinct = @($names | Sort-Object -Unique)
    if ($distinct.Count -ne 1) {
        throw ('not exactly one certificate for ' + $Domain + ' (found: ' + ($distinct -join '; ') + ')')
    }
    return $distinct[0]
}
""".strip("\n").splitlines()


def uses_lookup(commands: list[SetCommand]) -> bool:
    return any(c.lookup is not None for c in commands)


def lookup_lines(cmd: SetCommand, *, rollback: bool, key: str) -> list[str]:
    """Fill the variable the command passes: found now, or (rollback) as the remediation recorded it."""
    if cmd.lookup is None:
        return []
    var = str(LOOKED_UP_CERTIFICATE)
    slot = pwsh.quote(key + ":certificate")
    if rollback:
        # Not recorded (remediation.ps1 never applied it): $null, so an unchanged object is "restored".
        return [f"    {var} = $state[{slot}]"]
    servers = ",".join(pwsh.quote(s) for s in cmd.lookup.servers)
    return [
        f"    {var} = Find-ExconnCertificate -Server @({servers}) -Domain {pwsh.quote(cmd.lookup.domain)}"
    ]


def record_line(cmd: SetCommand, *, key: str) -> list[str]:
    """remediation.ps1 -Apply records the looked-up name, so rollback.ps1 knows what it set."""
    if cmd.lookup is None:
        return []
    return [f"        if ($Apply) {{ $state[{pwsh.quote(key + ':certificate')}] = {LOOKED_UP_CERTIFICATE} }}"]
