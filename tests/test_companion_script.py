"""scripts/Export-ExconnSnapshot.ps1: what the admin runs to hand an auditor the exports.

No PowerShell runs here: the script is parsed by tree-sitter-powershell, and what decides each
behaviour is read from its syntax tree.
"""

from __future__ import annotations

import re
from pathlib import Path

import tree_sitter as ts
import tree_sitter_powershell as tsp

SCRIPT = Path(__file__).parents[1] / "scripts" / "Export-ExconnSnapshot.ps1"
TEXT = SCRIPT.read_text("utf-8")
TREE = ts.Parser(ts.Language(tsp.language())).parse(TEXT.encode("utf-8"))


def _nodes(kind: str) -> list[str]:
    out: list[str] = []
    stack = [TREE.root_node]
    while stack:
        node = stack.pop()
        if node.type == kind:
            out.append((node.text or b"").decode())
        stack.extend(node.children)
    return out


def test_it_parses() -> None:
    assert not TREE.root_node.has_error


def test_every_cmdlet_is_called_through_the_prefix_resolver() -> None:
    # A session imported with -Prefix has Get-<Prefix>SendConnector only: a direct call would fail.
    invocations = [c for c in _nodes("command") if c.startswith("&")]
    assert invocations and all("Resolve-ExconnCmdlet" in c for c in invocations), invocations
    assert "$Prefix = Find-ExconnPrefix" in TEXT
    assert re.search(r"\[string\]\$Prefix\s*[,)]", TEXT)


def test_include_logs_copies_protocol_and_tracking_logs_and_records_logging_levels() -> None:
    assert "[switch]$IncludeLogs" in TEXT and "[int]$Days = 7" in TEXT and "[switch]$ReduceOnServer" in TEXT
    for path in ("ReceiveProtocolLogPath", "SendProtocolLogPath", "MessageTrackingLogPath"):
        assert f"$hub.{path}" in TEXT
    assert "$frontEnd.ReceiveProtocolLogPath" in TEXT and "'Get-FrontEndTransportService'" in TEXT
    assert "protocolLoggingLevel = [string]$c.ProtocolLoggingLevel" in TEXT
    assert "logs              = @($logs)" in TEXT and "--save" in TEXT
    # Read-only towards the servers: files are copied from them, nothing is removed or moved.
    assert "Remove-Item" not in TEXT and "Move-Item" not in TEXT


def test_on_an_edge_it_exports_the_edge_itself() -> None:
    assert "$isEdge = $self.Count -gt 0 -and [bool]$self[0].IsEdgeServer" in TEXT
    assert "if ($isEdge) { $Server = @([string]$self[0].Name) }" in TEXT
    assert "'ExchangeEdge'" in TEXT


def test_a_failed_cmdlet_gives_a_non_zero_exit_without_closing_a_console() -> None:
    tail = TEXT[TEXT.index("$failed = @($commands") :]
    assert "if ($PSCommandPath) { exit 1 } else { $global:LASTEXITCODE = 1 }" in tail
    code = TEXT[TEXT.index("#>") :]  # after the help block
    exits = [ln for ln in code.splitlines() if re.search(r"\bexit\b", ln) and not ln.strip().startswith("#")]
    assert all("$PSCommandPath" in ln for ln in exits), exits
