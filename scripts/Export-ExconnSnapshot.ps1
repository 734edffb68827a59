<#
.SYNOPSIS
    Exports the Exchange transport configuration that exconn audits into one folder (read-only).

.DESCRIPTION
    Run inside the Exchange Management Shell (Exchange 2016/2019/SE) or in a session connected to
    Exchange Online. The script only runs Get-* cmdlets: it changes nothing, needs no module beyond
    the session's own cmdlets, asks for no credentials and writes nothing outside -OutputFolder.

    Exchange Server session (detected by Get-SendConnector being available):
        Get-ExchangeServer, Get-SendConnector, Get-ReceiveConnector, Get-AcceptedDomain,
        Get-TransportConfig, Get-ExchangeCertificate -Server <each server>
    Edge Transport server (run on the Edge itself: its connectors are its own, not the
    organisation's): the same cmdlets, for this server only.
    Exchange Online session (detected by Get-InboundConnector without Get-SendConnector):
        Get-InboundConnector, Get-OutboundConnector, Get-AcceptedDomain

    Each cmdlet writes <Cmdlet>.xml with Export-Clixml (certificates: Get-ExchangeCertificate-<SERVER>.xml).
    A cmdlet that fails is recorded in manifest.json and does not stop the others. manifest.json
    records the organisation, the Exchange build, the UTC time, and every cmdlet run with its output
    file, object count and errors. Give the whole folder to exconn: exconn audit <folder>

    A session imported with Import-PSSession -Prefix names the cmdlets Get-<Prefix>SendConnector:
    the prefix is detected (or given with -Prefix) and the files keep the plain cmdlet names.
    The exit status is 0 when every cmdlet ran, 1 when one failed (see manifest.json).

.PARAMETER OutputFolder
    Folder to write to; created if missing. Existing files of the same names are overwritten.

.PARAMETER Server
    Exchange servers whose receive connectors and certificates to export. Default: every server
    Get-ExchangeServer returns (Edge servers excluded: run the script on the Edge itself).

.PARAMETER Prefix
    The -Prefix the Exchange session was imported with, when it cannot be detected.

.PARAMETER IncludeLogs
    Also copy, read-only, the SMTP receive and send protocol logs (FrontEnd and Hub) and the message
    tracking logs of the last -Days days of each server (paths from Get-TransportService and
    Get-FrontEndTransportService, read over the admin share \\server\X$) into Logs\<server>\ for
    `exconn audit` (and `exconn evidence`). The manifest lists every file copied and each
    connector's ProtocolLoggingLevel (None: the connector logs nothing).

.PARAMETER Days
    With -IncludeLogs: how many days of logs to copy (default 7).

.PARAMETER ReduceOnServer
    With -IncludeLogs: copy nothing; the manifest and the console say, per server, how to run
    `exconn evidence <log folders> --save <server>-evidence.json` where the logs lie, and
    `exconn audit <snapshot> --evidence <server>-evidence.json ...` afterwards.

.EXAMPLE
    .\Export-ExconnSnapshot.ps1 -OutputFolder C:\Temp\exconn
    Exports everything from every Exchange server of the organisation.

.EXAMPLE
    .\Export-ExconnSnapshot.ps1 -OutputFolder C:\Temp\exconn -Server EX01, EX02
    Limits receive connectors and certificates to EX01 and EX02.

.EXAMPLE
    .\Export-ExconnSnapshot.ps1 -OutputFolder C:\Temp\exconn -IncludeLogs -Days 7
    Also copies a week of protocol and message tracking logs of every server.

.EXAMPLE
    Connect-ExchangeOnline; .\Export-ExconnSnapshot.ps1 -OutputFolder .\exo
    Exports the Exchange Online inbound and outbound connectors and accepted domains.

.NOTES
    Windows PowerShell 5.1 compatible. Read-only. Files are written with Export-Clixml -Depth 3
    -Encoding Unicode (UTF-16LE, Windows PowerShell's default; exconn reads UTF-8 too) and the
    manifest as UTF-8 without BOM. Private keys are never exported: Get-ExchangeCertificate
    returns public certificate data only. Part of exconn; format "exconn-snapshot" version 1.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [string]$OutputFolder,

    [string[]]$Server,

    [string]$Prefix,

    [switch]$IncludeLogs,

    [ValidateRange(1, 366)]
    [int]$Days = 7,

    [switch]$ReduceOnServer
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Continue'
$ScriptVersion = '1.0'

if (-not (Test-Path -LiteralPath $OutputFolder)) {
    New-Item -ItemType Directory -Path $OutputFolder -Force | Out-Null
}
$OutputFolder = (Resolve-Path -LiteralPath $OutputFolder).ProviderPath
$commands = New-Object System.Collections.ArrayList

function Resolve-ExconnCmdlet {
    <# Get-SendConnector as this session names it: Get-<Prefix>SendConnector after Import-PSSession -Prefix. #>
    param([string]$Name)
    if (-not $script:Prefix) { return $Name }
    $verb, $noun = $Name -split '-', 2
    return "$verb-$($script:Prefix)$noun"
}

function Find-ExconnPrefix {
    <# The prefix of an imported session: a Get-<X>SendConnector or Get-<X>InboundConnector exists. #>
    foreach ($noun in 'SendConnector', 'InboundConnector') {
        $found = @(Get-Command -Name "Get-*$noun" -ErrorAction SilentlyContinue |
            Where-Object { $_.Name -match "^Get-(.+)$noun$" -and $_.Name -notmatch "^Get-(Foreign|Delivery)Agent" })
        foreach ($command in $found) {
            if ($command.Name -match "^Get-(.+)$noun$") { return $Matches[1] }
        }
    }
    return $null
}

function Invoke-Export {
    <# Runs one Get-* cmdlet, exports its output to $File (when given), records the run in the manifest. #>
    param(
        [Parameter(Mandatory)][string]$Cmdlet,
        [hashtable]$Parameters = @{},
        [string]$File,
        [string]$TargetServer
    )
    $entry = [ordered]@{
        cmdlet = $Cmdlet
        server = $(if ($TargetServer) { $TargetServer } else { $null })
        file   = $null
        count  = 0
        errors = @()
    }
    $errorsSeen = @()
    $objects = @()
    $callErrors = $null
    try {
        # -ErrorVariable keeps non-terminating errors (one server unreachable...) for the manifest;
        # terminating ones land in catch. Either way the next cmdlet still runs.
        $objects = @(& (Resolve-ExconnCmdlet $Cmdlet) @Parameters -ErrorAction Continue -ErrorVariable callErrors)
    }
    catch {
        $errorsSeen += $_.Exception.Message
    }
    if ($callErrors) { $errorsSeen += @($callErrors | ForEach-Object { $_.ToString() }) }
    $entry.count = $objects.Count
    if ($File -and $objects.Count -gt 0) {
        try {
            $objects | Export-Clixml -LiteralPath (Join-Path $OutputFolder $File) -Depth 3 -Encoding Unicode -ErrorAction Stop
            $entry.file = $File
        }
        catch {
            $errorsSeen += "Export-Clixml ${File}: $($_.Exception.Message)"
        }
    }
    $entry.errors = @($errorsSeen)
    [void]$script:commands.Add($entry)
    $label = $Cmdlet + $(if ($TargetServer) { " -Server $TargetServer" } else { '' })
    if ($errorsSeen.Count -gt 0) { Write-Warning "${label}: $($errorsSeen -join '; ')" }
    else { Write-Verbose "${label}: $($objects.Count) object(s)" }
    return , $objects
}

if (-not $Prefix -and -not (Get-Command -Name @('Get-SendConnector', 'Get-InboundConnector') -ErrorAction SilentlyContinue)) {
    $Prefix = Find-ExconnPrefix
    if ($Prefix) { Write-Warning "The Exchange session was imported with -Prefix $Prefix; using Get-${Prefix}SendConnector and so on." }
}
$isOnPremises = [bool](Get-Command -Name (Resolve-ExconnCmdlet 'Get-SendConnector') -ErrorAction SilentlyContinue)
$isOnline = (-not $isOnPremises) -and [bool](Get-Command -Name (Resolve-ExconnCmdlet 'Get-InboundConnector') -ErrorAction SilentlyContinue)
if (-not $isOnPremises -and -not $isOnline) {
    throw 'No Exchange cmdlets found: run this in the Exchange Management Shell or after Connect-ExchangeOnline (a session imported with -Prefix: pass -Prefix).'
}
$isEdge = $false

$organization = $null
$orgConfig = Invoke-Export -Cmdlet 'Get-OrganizationConfig'
if ($orgConfig.Count -gt 0) { $organization = [string]$orgConfig[0].Name }

$build = $null
$serverBuilds = @()
if ($isOnPremises) {
    $exchangeServers = Invoke-Export -Cmdlet 'Get-ExchangeServer' -File 'Get-ExchangeServer.xml'
    foreach ($s in $exchangeServers) {
        $serverBuilds += [ordered]@{ name = [string]$s.Name; build = [string]$s.AdminDisplayVersion; role = [string]$s.ServerRole }
    }
    if ($serverBuilds.Count -gt 0) {
        # "Version 15.2 (Build 1544.4)": the newest build in the organisation.
        $build = ($serverBuilds | Sort-Object -Property @{ Expression = { $_.build } } -Descending | Select-Object -First 1).build
    }
    # On an Edge Transport server Get-ExchangeServer lists the Edge itself: its connectors,
    # certificates and transport config are local to it, so export this server's own.
    $self = @($exchangeServers | Where-Object { [string]$_.Name -eq $env:COMPUTERNAME })
    $isEdge = $self.Count -gt 0 -and [bool]$self[0].IsEdgeServer
    if (-not $Server) {
        if ($isEdge) { $Server = @([string]$self[0].Name) }
        else { $Server = @($exchangeServers | Where-Object { -not $_.IsEdgeServer } | ForEach-Object { [string]$_.Name }) }
    }

    [void](Invoke-Export -Cmdlet 'Get-SendConnector' -File 'Get-SendConnector.xml')

    # One file for every server's receive connectors: each object carries its own Server property.
    $receive = New-Object System.Collections.ArrayList
    foreach ($s in $Server) {
        $found = Invoke-Export -Cmdlet 'Get-ReceiveConnector' -Parameters @{ Server = $s } -TargetServer $s
        foreach ($o in $found) { [void]$receive.Add($o) }
    }
    if ($receive.Count -gt 0) {
        try {
            $receive | Export-Clixml -LiteralPath (Join-Path $OutputFolder 'Get-ReceiveConnector.xml') -Depth 3 -Encoding Unicode -ErrorAction Stop
            foreach ($entry in $commands) {
                if ($entry.cmdlet -eq 'Get-ReceiveConnector' -and $entry.count -gt 0) { $entry.file = 'Get-ReceiveConnector.xml' }
            }
        }
        catch {
            [void]$commands.Add([ordered]@{ cmdlet = 'Export-Clixml'; server = $null; file = 'Get-ReceiveConnector.xml'; count = 0; errors = @($_.Exception.Message) })
        }
    }

    [void](Invoke-Export -Cmdlet 'Get-AcceptedDomain' -File 'Get-AcceptedDomain.xml')
    [void](Invoke-Export -Cmdlet 'Get-TransportConfig' -File 'Get-TransportConfig.xml')
    foreach ($s in $Server) {
        [void](Invoke-Export -Cmdlet 'Get-ExchangeCertificate' -Parameters @{ Server = $s } -TargetServer $s -File "Get-ExchangeCertificate-$s.xml")
    }
}
else {
    [void](Invoke-Export -Cmdlet 'Get-InboundConnector' -File 'Get-InboundConnector.xml')
    [void](Invoke-Export -Cmdlet 'Get-OutboundConnector' -File 'Get-OutboundConnector.xml')
    [void](Invoke-Export -Cmdlet 'Get-AcceptedDomain' -File 'Get-AcceptedDomain.xml')
}

$logs = New-Object System.Collections.ArrayList
$connectorLogging = New-Object System.Collections.ArrayList

function ConvertTo-ExconnSharePath {
    <# D:\Logs on EX02 read from here as \\EX02\D$\Logs (the local path when run on that server). #>
    param([string]$Path, [string]$OnServer)
    if (-not $Path) { return $null }
    if ($OnServer -eq $env:COMPUTERNAME -or $Path.StartsWith('\\')) { return $Path }
    return ('\\' + $OnServer + '\' + $Path.Substring(0, 1) + '$' + $Path.Substring(2))
}

function Copy-ExconnLogs {
    <# Copies (read-only: the sources are only read) the files of the last $Days days of one log folder. #>
    param([string]$OnServer, [string]$Kind, [string]$Path)
    $entry = [ordered]@{ server = $OnServer; kind = $Kind; source = $Path; files = @(); errors = @() }
    $source = ConvertTo-ExconnSharePath -Path $Path -OnServer $OnServer
    if ($ReduceOnServer) {
        $entry.reduce = "exconn evidence `"$Path`" --save `"$OnServer-$Kind-evidence.json`""
        [void]$logs.Add($entry)
        return
    }
    $since = (Get-Date).AddDays(-$Days)
    $target = Join-Path (Join-Path (Join-Path $OutputFolder 'Logs') $OnServer) $Kind
    try {
        $found = @(Get-ChildItem -LiteralPath $source -File -Recurse -ErrorAction Stop | Where-Object { $_.LastWriteTime -ge $since })
        if ($found.Count -gt 0 -and -not (Test-Path -LiteralPath $target)) {
            New-Item -ItemType Directory -Path $target -Force | Out-Null
        }
        $copied = New-Object System.Collections.ArrayList
        foreach ($file in $found) {
            try {
                Copy-Item -LiteralPath $file.FullName -Destination (Join-Path $target $file.Name) -ErrorAction Stop
                [void]$copied.Add($file.Name)
            }
            catch { $entry.errors += $_.Exception.Message }
        }
        $entry.files = @($copied)
    }
    catch { $entry.errors += $_.Exception.Message }
    [void]$logs.Add($entry)
}

if ($IncludeLogs -and $isOnPremises) {
    foreach ($s in $Server) {
        $hub = $null
        $frontEnd = $null
        try { $hub = & (Resolve-ExconnCmdlet 'Get-TransportService') -Identity $s -ErrorAction Stop } catch { }
        try { $frontEnd = & (Resolve-ExconnCmdlet 'Get-FrontEndTransportService') -Identity $s -ErrorAction Stop } catch { }
        if ($null -ne $hub) {
            Copy-ExconnLogs -OnServer $s -Kind 'Hub-SmtpReceive' -Path ([string]$hub.ReceiveProtocolLogPath)
            Copy-ExconnLogs -OnServer $s -Kind 'Hub-SmtpSend' -Path ([string]$hub.SendProtocolLogPath)
            Copy-ExconnLogs -OnServer $s -Kind 'MessageTracking' -Path ([string]$hub.MessageTrackingLogPath)
        }
        if ($null -ne $frontEnd) {
            Copy-ExconnLogs -OnServer $s -Kind 'FrontEnd-SmtpReceive' -Path ([string]$frontEnd.ReceiveProtocolLogPath)
            Copy-ExconnLogs -OnServer $s -Kind 'FrontEnd-SmtpSend' -Path ([string]$frontEnd.SendProtocolLogPath)
        }
        foreach ($c in @(& (Resolve-ExconnCmdlet 'Get-ReceiveConnector') -Server $s -ErrorAction SilentlyContinue)) {
            [void]$connectorLogging.Add([ordered]@{ kind = 'ReceiveConnector'; identity = [string]$c.Identity; protocolLoggingLevel = [string]$c.ProtocolLoggingLevel })
        }
    }
    foreach ($c in @(& (Resolve-ExconnCmdlet 'Get-SendConnector') -ErrorAction SilentlyContinue)) {
        [void]$connectorLogging.Add([ordered]@{ kind = 'SendConnector'; identity = [string]$c.Identity; protocolLoggingLevel = [string]$c.ProtocolLoggingLevel })
    }
    if ($ReduceOnServer) {
        foreach ($entry in $logs) { Write-Host ("On " + $entry.server + ": " + $entry.reduce) }
        Write-Host 'Then: exconn audit <this folder> --evidence <each saved file> ...'
    }
}

$manifest = [ordered]@{
    format            = 'exconn-snapshot'
    version           = 1
    environment       = $(if ($isEdge) { 'ExchangeEdge' } elseif ($isOnPremises) { 'ExchangeServer' } else { 'ExchangeOnline' })
    cmdletPrefix      = $(if ($Prefix) { $Prefix } else { $null })
    organization      = $organization
    exchangeBuild     = $build
    servers           = @($serverBuilds)
    createdUtc        = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')
    computerName      = $env:COMPUTERNAME
    powerShellVersion = $PSVersionTable.PSVersion.ToString()
    scriptVersion     = $ScriptVersion
    commands          = @($commands)
    logs              = @($logs)
    connectorLogging  = @($connectorLogging)
}
# UTF-8 without BOM: Set-Content/Out-File in 5.1 cannot write that, .NET can.
$json = ConvertTo-Json -InputObject $manifest -Depth 5
[System.IO.File]::WriteAllText((Join-Path $OutputFolder 'manifest.json'), $json, (New-Object System.Text.UTF8Encoding($false)))

$failed = @($commands | Where-Object { $_.errors.Count -gt 0 })
Write-Host "exconn snapshot written to $OutputFolder ($($commands.Count) cmdlet runs, $($failed.Count) with errors)."
if ($failed.Count -gt 0) {
    Write-Warning ('Cmdlets that failed: ' + (@($failed | ForEach-Object { $_.cmdlet }) -join ', ') + ' (see manifest.json)')
    # exit only when run from its file: pasted into a console, exit would close it.
    if ($PSCommandPath) { exit 1 } else { $global:LASTEXITCODE = 1 }
}
