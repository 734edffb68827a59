#!/usr/bin/env python3
# ruff: noqa: E501 - data tables and the README template read better unwrapped
"""Generate `samples/`: the made-up Fabrikam organisation, in every form exconn reads.

Deterministic: a fixed seed drives every GUID, key, serial number and filler blob, and every
timestamp is fixed, so re-running gives byte-identical files (the tests check this).

    python scripts/make_samples.py [OUTPUT_DIR]     # default: samples/ next to this script's parent

The mistakes planted in the organisation, and the findings they should produce, are listed in
samples/README.md (written from this script's data, so the two cannot drift apart).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.clixml_build import (  # noqa: E402 - after the sys.path tweak for a plain checkout
    ACCEPTED_DOMAIN_TYPES,
    AUTH_MECHANISMS_TYPE,
    EXCHANGE_CERTIFICATE_TYPES,
    EXCHANGE_SERVER_TYPES,
    I64,
    INBOUND_CONNECTOR_TYPES,
    OUTBOUND_CONNECTOR_TYPES,
    PERMISSION_GROUPS_TYPE,
    RECEIVE_CONNECTOR_TYPES,
    SEND_CONNECTOR_TYPES,
    TRANSPORT_CONFIG_TYPES,
    AddressSpace,
    AdObjectId,
    By,
    Enum,
    ExValue,
    Fqdn,
    IPBinding,
    IPRange,
    Multi,
    Obj,
    SecureString,
    SmartHost,
    SmtpDomain,
    SmtpX509Identifier,
    Value,
    encode,
    to_xml,
    write_file,
)

SEED = 20250602
EXPORT_TIME = dt.datetime(2025, 6, 2, 8, 15, 0, tzinfo=dt.UTC)
BST = dt.timezone(dt.timedelta(hours=1))
GMT = dt.timezone(dt.timedelta(0), "GMT")  # a Local time at offset 0, written "+00:00" like Windows does

ORG = "Fabrikam"
AD_DOMAIN = "corp.fabrikam.com"
AD_DC = "DC=corp,DC=fabrikam,DC=com"
CONFIG = f"CN=Configuration,{AD_DC}"
ORG_DN = f"CN={ORG},CN=Microsoft Exchange,CN=Services,{CONFIG}"
ADMIN_GROUP = f"CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups,{ORG_DN}"
ROUTING_GROUP = f"CN=Exchange Routing Group (DWBGZMFD01QNBJR),CN=Routing Groups,{ADMIN_GROUP}"
SERVERS = ("EX01", "EX02")
SESSION_SERVER = "ex01.corp.fabrikam.com"  # the EMS session the admin ran the export in
BUILD = "Version 15.2 (Build 1544.4)"  # Exchange 2019 CU14
LE_ISSUER = "CN=R11, O=Let's Encrypt, C=US"
SECTIGO_ISSUER = (
    "CN=Sectigo RSA Domain Validation Secure Server CA, O=Sectigo Limited, L=Salford, "
    "S=Greater Manchester, C=GB"
)
CONTOSO_IPS = ("203.0.113.10", "203.0.113.11")
# The copiers' scan-to-cloud vendor: an internet partner, so a registrable name under a public suffix
# (Proseware is one of Microsoft's fictitious companies). A reserved name such as `.example` would
# make exconn treat the connector as lab-only and lower every severity on it.
SCAN_VENDOR = "proseware.com"
SCAN_DOMAIN = f"scan.{SCAN_VENDOR}"
SCAN_SMART_HOST = f"smtp.{SCAN_VENDOR}"
SCANNER_RANGE = "10.20.30.0/24"

TIMESPAN_TYPES = ("Microsoft.Exchange.Data.EnhancedTimeSpan", "System.ValueType")
BYTE_SIZE_TYPES = ("Microsoft.Exchange.Data.ByteQuantifiedSize", "System.ValueType")
SERVER_ROLE_TYPE = "Microsoft.Exchange.Data.Directory.SystemConfiguration.ServerRole"


class Rng:
    """Every random choice goes through one seeded generator, in a fixed order."""

    def __init__(self, seed: int) -> None:
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - sample data, not secrets

    def guid(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def bits(self, n: int) -> int:
        return self._rng.getrandbits(n)

    def hex(self, nbytes: int) -> str:
        return self._rng.randbytes(nbytes).hex()


RNG = Rng(SEED)
RUNSPACE = RNG.guid()
EXO_RUNSPACE = RNG.guid()
PARTITION = RNG.guid()
HYBRID_GUID = RNG.guid()


# --- shared Exchange objects ----------------------------------------------------------------------

# One OrganizationId instance for the whole file: PowerShell writes it once, then `<Ref>`s it.
ORGANIZATION_ID = ExValue(
    ("Microsoft.Exchange.Data.Directory.OrganizationId",),
    "",
    {
        "OrganizationalUnit": None,
        "ConfigurationUnit": None,
        "IsConsumerOrganization": False,
        "IdForEventLog": "",
    },
)


def ad_id(display: str, dn: str) -> Obj:
    return AdObjectId(display, dn=dn, guid=RNG.guid(), domain=AD_DOMAIN, partition_guid=PARTITION)


def timespan(hours: int = 0, minutes: int = 0, seconds: int = 0) -> Obj:
    total = hours * 3600 + minutes * 60 + seconds
    return ExValue(
        TIMESPAN_TYPES,
        f"{hours:02d}:{minutes:02d}:{seconds:02d}",
        {"Days": 0, "Hours": hours, "Minutes": minutes, "Seconds": seconds, "Ticks": I64(total * 10_000_000)},
    )


def byte_size(megabytes: int) -> Obj:
    n = megabytes * 1024 * 1024
    return ExValue(BYTE_SIZE_TYPES, f"{megabytes} MB ({n:,} bytes)")


def version_obj() -> Obj:
    return ExValue(
        ("Microsoft.Exchange.Data.ExchangeObjectVersion",),
        "0.1 (8.0.535.0)",
        {"Major": By(0), "Minor": By(1), "ExchangeBuild": "8.0.535.0"},
    )


def ad_tail(
    name: str, identity: Obj, dn: str, category: str, classes: Sequence[str], created: dt.datetime
) -> dict[str, Value]:
    """The AD bookkeeping every Exchange configuration object ends with (Identity, Id, When*...)."""
    changed = created + dt.timedelta(days=41, hours=3, minutes=17)
    return {
        "AdminDisplayName": "",
        "ExchangeVersion": version_obj(),
        "Name": name,
        "DistinguishedName": dn,
        "Identity": identity,
        "Guid": identity.props["ObjectGuid"],
        "ObjectCategory": f"{AD_DOMAIN}/Configuration/Schema/{category}",
        "ObjectClass": Multi(["top", *classes]),
        "WhenChanged": changed,
        "WhenCreated": created,
        "WhenChangedUTC": changed.astimezone(dt.UTC),
        "WhenCreatedUTC": created.astimezone(dt.UTC),
        "OrganizationId": ORGANIZATION_ID,
        "Id": identity,  # the same instance: written as <Ref>, as in real exports
        "OriginatingServer": "DC01.corp.fabrikam.com",
        "IsValid": True,
        "ObjectState": Enum("Microsoft.Exchange.Data.ObjectState", "Unchanged", 1),
    }


def top(types: Sequence[str], to_string: str, props: dict[str, Value], computer: str = SESSION_SERVER) -> Obj:
    runspace = EXO_RUNSPACE if computer == "outlook.office365.com" else RUNSPACE
    return Obj(
        tuple(types),
        to_string=to_string,
        props=props,
        ms={"PSComputerName": computer, "RunspaceId": runspace, "PSShowComputerName": False},
        blob=True,
    )


# --- receive connectors ---------------------------------------------------------------------------

AUTH_NAMES = (
    "Tls",
    "Integrated",
    "BasicAuth",
    "BasicAuthRequireTLS",
    "ExchangeServer",
    "ExternalAuthoritative",
)
GROUP_NAMES = (
    "AnonymousUsers",
    "ExchangeUsers",
    "ExchangeServers",
    "ExchangeLegacyServers",
    "Partners",
    "Custom",
)


def flags(type_name: str, names: Sequence[str], order: Sequence[str]) -> Obj:
    value = sum(1 << order.index(n) for n in names)
    return Enum(type_name, ", ".join(n for n in order if n in names) or "None", value)


@dataclass(frozen=True)
class Expect:
    """A finding samples/README.md promises; tests/test_samples.py reads every one back from the README
    and compares it with what `exconn audit --offline` prints."""

    rule: str
    severity: str  # as the JSON report writes it: critical, high, medium, low, info
    why: str


def expected(findings: Sequence[Expect], quiet: str) -> str:
    """The README's "expected finding" cell: `EXC-R002` **high**: why; or none: why."""
    if not findings:
        return f"none: {quiet}"
    return "; ".join(f"`{e.rule}` **{e.severity}**: {e.why}" for e in findings)


@dataclass
class Recv:
    name: str
    role: str  # FrontendTransport | HubTransport
    bindings: Sequence[str]
    auth: Sequence[str]
    groups: Sequence[str]
    remote: Sequence[str] = ("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "0.0.0.0-255.255.255.255")
    require_tls: bool = False
    domain_secure: bool = False
    fqdn: str | None = None
    cert: str | None = None
    comment: str = ""
    capabilities: Sequence[str] = ()
    max_message_mb: int = 36
    planted: str = ""  # the mistake, for the README
    expect: tuple[Expect, ...] = ()  # the findings it should produce
    quiet: str = ""  # why it produces none


ALL_AUTH = ("Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer")


def default_receive(server: str) -> list[Recv]:
    fqdn = f"{server.lower()}.corp.fabrikam.com"
    v46 = lambda port: (f"[::]:{port}", f"0.0.0.0:{port}")  # noqa: E731
    return [
        Recv(f"Default {server}", "HubTransport", v46(2525), ALL_AUTH,
             ("ExchangeUsers", "ExchangeServers", "ExchangeLegacyServers"), fqdn=fqdn),
        Recv(f"Client Proxy {server}", "HubTransport", v46(465), ALL_AUTH,
             ("ExchangeUsers", "ExchangeServers"), fqdn=fqdn),
        Recv(f"Default Frontend {server}", "FrontendTransport", v46(25), ALL_AUTH,
             ("AnonymousUsers", "ExchangeServers", "ExchangeLegacyServers"), fqdn="mail.fabrikam.com",
             cert=f"<I>{LE_ISSUER}<S>CN=mail.fabrikam.com",
             capabilities=("mail.protection.outlook.com:AcceptCloudServicesMail",)),
        Recv(f"Outbound Proxy Frontend {server}", "FrontendTransport", v46(717), ALL_AUTH,
             ("ExchangeServers",), domain_secure=True, fqdn=fqdn),
        Recv(f"Client Frontend {server}", "FrontendTransport", v46(587),
             ("Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS"), ("ExchangeUsers",), fqdn=fqdn),
    ]  # fmt: skip


def receive_connectors() -> dict[str, list[Recv]]:
    ex01 = default_receive("EX01")
    ex02 = default_receive("EX02")
    client = next(c for c in ex01 if c.name.startswith("Client Frontend"))
    client.auth = ("Tls", "Integrated", "BasicAuth")
    client.planted = "BasicAuth without BasicAuthRequireTLS (AUTH offered before STARTTLS)"
    client.expect = (
        Expect("EXC-R002", "high", "AUTH with passwords is offered before STARTTLS on the submission "
               "port 587, which listens to every remote address"),
    )  # fmt: skip
    front2 = next(c for c in ex02 if c.name.startswith("Default Frontend"))
    front2.cert = f"<I>{SECTIGO_ISSUER}<S>CN=mail.fabrikam.com"
    front2.planted = "TlsCertificateName names the old Sectigo certificate, expired 2024-11-30 (only on EX02)"
    front2.expect = (
        Expect("EXC-R006", "high", "the internet MX; Exchange still presents the expired certificate and "
               "still offers STARTTLS (events 12016/12018), but senders that validate certificates (MTA-STS, "
               "DANE, TLS-enforcing connectors) refuse it and queue the mail"),
    )  # fmt: skip
    ex02 += [
        Recv("Relay EX02", "FrontendTransport", ("0.0.0.0:25",), (), ("AnonymousUsers",),
             remote=(SCANNER_RANGE,), fqdn="ex02.corp.fabrikam.com",
             comment="Scanners and printers, 2nd floor. Do not enable TLS: the old Kyocera firmware breaks.",
             planted="anonymous relay for a device range, AuthMechanism None (no Tls: STARTTLS never offered)",
             expect=(Expect("EXC-R001", "medium", "anonymous SMTP that never offers STARTTLS; critical for an "
                            "internet MX, two steps lower because RemoteIPRanges is a private /24"),)),
        Recv("Partner Contoso", "FrontendTransport", ("0.0.0.0:25",), ("Tls",), ("Partners",),
             remote=CONTOSO_IPS, require_tls=True, domain_secure=True, fqdn="mail.fabrikam.com",
             cert=f"<I>{LE_ISSUER}<S>CN=mail.fabrikam.com",
             planted="DomainSecureEnabled, but contoso.com is missing from TLSReceiveDomainSecureList",
             expect=(Expect("EXC-R004", "medium", "contoso.com is missing from TLSReceiveDomainSecureList "
                            "(RequireTLS here must not fire the public-MX rule EXC-R003: the connector is "
                            "scoped to two partner IPs)"),)),
    ]  # fmt: skip
    return {"EX01": ex01, "EX02": ex02}


def receive_obj(server: str, c: Recv, created: dt.datetime) -> Obj:
    identity_text = f"{server}\\{c.name}"
    dn = f"CN={c.name},CN=SMTP Receive Connectors,CN=Protocols,CN={server},CN=Servers,{ADMIN_GROUP}"
    identity = ad_id(identity_text, dn)
    role_value = 16384 if c.role == "FrontendTransport" else 32
    props: dict[str, Value] = {
        "AuthMechanism": flags(AUTH_MECHANISMS_TYPE, c.auth, AUTH_NAMES),
        "Banner": "",
        "BinaryMimeEnabled": True,
        "Bindings": Multi([IPBinding(b) for b in c.bindings], "Microsoft.Exchange.Data.IPBinding"),
        "ChunkingEnabled": True,
        "DefaultDomain": None,
        "DeliveryStatusNotificationEnabled": True,
        "EightBitMimeEnabled": True,
        "SmtpUtf8Enabled": True,
        "BareLinefeedRejectionEnabled": False,
        "DomainSecureEnabled": c.domain_secure,
        "EnhancedStatusCodesEnabled": True,
        "LongAddressesEnabled": False,
        "OrarEnabled": False,
        "SuppressXAnonymousTls": False,
        "ProxyEnabled": False,
        "AdvertiseClientSettings": False,
        "Fqdn": Fqdn(c.fqdn) if c.fqdn else None,
        "ServiceDiscoveryFqdn": None,
        "TlsCertificateName": SmtpX509Identifier(c.cert) if c.cert else None,
        "Comment": c.comment,
        "Enabled": True,
        "ConnectionTimeout": timespan(minutes=10),
        "ConnectionInactivityTimeout": timespan(minutes=5),
        "MaxHopCount": 60,
        "MaxLocalHopCount": 8 if c.role == "FrontendTransport" else 5,
        "MaxLogonFailures": 3,
        "MaxMessageSize": byte_size(c.max_message_mb),
        "MaxRecipientsPerMessage": 200 if c.role == "FrontendTransport" else 5000,
        "PermissionGroups": flags(PERMISSION_GROUPS_TYPE, c.groups, GROUP_NAMES),
        "PipeliningEnabled": True,
        "ProtocolLoggingLevel": Enum("Microsoft.Exchange.Data.ProtocolLoggingLevel", "Verbose", 2),
        "RemoteIPRanges": Multi([IPRange(r) for r in c.remote], "Microsoft.Exchange.Data.IPRange"),
        "RequireEHLODomain": False,
        "RequireTLS": c.require_tls,
        "EnableAuthGSSAPI": False,
        "ExtendedProtectionPolicy": Enum(
            "Microsoft.Exchange.Data.Directory.SystemConfiguration.ExtendedProtectionPolicySetting", "None", 0
        ),
        "LiveCredentialEnabled": False,
        "TlsDomainCapabilities": Multi(
            [
                ExValue(
                    ("Microsoft.Exchange.Data.SmtpReceiveDomainCapabilities",),
                    cap,
                    {
                        "Domain": cap.split(":")[0],
                        "Capabilities": cap.split(":")[1],
                        "SmtpX509Identifier": None,
                    },
                )
                for cap in c.capabilities
            ],
            "Microsoft.Exchange.Data.SmtpReceiveDomainCapabilities",
        ),
        "Server": ad_id(server, f"CN={server},CN=Servers,{ADMIN_GROUP}"),
        "TransportRole": Enum(SERVER_ROLE_TYPE, c.role, role_value),
        "SizeEnabled": Enum("Microsoft.Exchange.Data.SizeMode", "Enabled", 1),
        "TarpitInterval": timespan(seconds=5),
        **ad_tail(
            c.name, identity, dn, "ms-Exch-Smtp-Receive-Connector", ["msExchSmtpReceiveConnector"], created
        ),
    }
    return top(RECEIVE_CONNECTOR_TYPES, identity_text, props)


# --- send connectors ------------------------------------------------------------------------------


@dataclass
class Send:
    name: str
    spaces: Sequence[str]
    dns_routing: bool = True
    smart_hosts: Sequence[str] = ()
    port: int = 25
    fqdn: str | None = "mail.fabrikam.com"
    enabled: bool = True
    ignore_starttls: bool = False
    require_tls: bool = False
    tls_auth: tuple[str, int] | None = None
    tls_domain: str | None = None
    cert: str | None = None
    smart_host_auth: tuple[str, int] = ("None", 0)
    credential_user: str | None = None
    cloud: bool = False
    comment: str = ""
    planted: str = ""
    expect: tuple[Expect, ...] = ()
    quiet: str = ""
    extra: dict[str, Value] = field(default_factory=dict)


def send_connectors() -> list[Send]:
    return [
        Send("Internet", ["SMTP:*;1"],
             planted="nothing: opportunistic TLS to the internet, as Exchange sets it up",
             quiet="opportunistic TLS, which validates no certificate, is what the internet at large needs"),
        Send(f"Outbound to Office 365 - {HYBRID_GUID}", ["smtp:fabrikam.mail.onmicrosoft.com;1"],
             require_tls=True, tls_auth=("DomainValidation", 4), tls_domain="mail.protection.outlook.com",
             cert=f"<I>{LE_ISSUER}<S>CN=mail.fabrikam.com", cloud=True,
             planted="nothing: the Hybrid Configuration Wizard's shape",
             quiet="the certificate it names exists, is valid and has SMTP"),
        Send("Legacy Scanner Relay", [f"smtp:{SCAN_DOMAIN};1"], dns_routing=False,
             smart_hosts=[SCAN_SMART_HOST], port=587, ignore_starttls=True,
             smart_host_auth=("BasicAuth", 1), credential_user=f"fabrikam-copiers@{SCAN_VENDOR}",
             comment="Scan-to-cloud for the copiers. Vendor said TLS is not needed.",
             planted=f"IgnoreSTARTTLS with SmartHostAuthMechanism BasicAuth towards the scan vendor's smart host "
             f"{SCAN_SMART_HOST} on the internet: password and mail in clear",
             expect=(Expect("EXC-S001", "high", "mail crosses the internet in plaintext; one step below critical "
                            "because the connector is scoped to one domain, not SMTP:*"),
                     Expect("EXC-S004", "critical", "the relay account's password crosses the internet in "
                            "clear on every connection, whatever the scope"))),
        Send("To Contoso", ["smtp:contoso.com;10"], require_tls=True, tls_auth=("EncryptionOnly", 1),
             planted="RequireTLS with TlsAuthLevel EncryptionOnly: any certificate is accepted",
             expect=(Expect("EXC-S002", "high", "an interceptor can present any certificate and read the "
                            "mail; scoping the connector to one partner does not make that smaller"),)),
        Send("Lab", ["smtp:lab.fabrikam.local;1"], dns_routing=False, smart_hosts=["labgw.lab.fabrikam.local"],
             fqdn=None, enabled=False, ignore_starttls=True,
             planted="IgnoreSTARTTLS, but disabled and scoped to an internal lab domain",
             expect=(Expect("EXC-S001", "info", "critical lowered two steps for the lab-only scope "
                            "(lab.fabrikam.local never resolves on the internet) and two more because the "
                            "connector is disabled"),)),
    ]  # fmt: skip


def send_obj(c: Send, created: dt.datetime) -> Obj:
    dn = f"CN={c.name},CN=Connections,{ROUTING_GROUP}"
    identity = ad_id(c.name, dn)
    credential: Value = None
    if c.credential_user:
        credential = Obj(
            ("System.Management.Automation.PSCredential", "System.Object"),
            to_string="System.Management.Automation.PSCredential",
            # A made-up DPAPI-shaped blob: the sample carries no real secret.
            props={"UserName": c.credential_user, "Password": SecureString("01000000d08c9ddf" + RNG.hex(94))},
        )
    props: dict[str, Value] = {
        "DNSRoutingEnabled": c.dns_routing,
        "TlsDomain": c.tls_domain,
        "TlsAuthLevel": Enum("Microsoft.Exchange.Data.TlsAuthLevel", *c.tls_auth) if c.tls_auth else None,
        "ErrorPolicies": Enum("Microsoft.Exchange.Data.ErrorPolicies", "Default", 0),
        "SmartHosts": Multi([SmartHost(h) for h in c.smart_hosts], "Microsoft.Exchange.Data.SmartHost"),
        "Port": c.port,
        "ConnectionInactivityTimeOut": timespan(minutes=10),
        "ForceHELO": False,
        "FrontendProxyEnabled": False,
        # As Get-SendConnector prints it: the System.Net.IPAddress 0.0.0.0 (any local address).
        "SourceIPAddress": ExValue(("System.Net.IPAddress", "System.Object"), "0.0.0.0", {"AddressFamily": "InterNetwork"}),
        "IgnoreSTARTTLS": c.ignore_starttls,
        "CloudServicesMailEnabled": c.cloud,
        "Fqdn": Fqdn(c.fqdn) if c.fqdn else None,
        "TlsCertificateName": SmtpX509Identifier(c.cert) if c.cert else None,
        "RequireTLS": c.require_tls,
        "RequireOorg": False,
        "Enabled": c.enabled,
        "ProtocolLoggingLevel": Enum("Microsoft.Exchange.Data.ProtocolLoggingLevel", "None", 0),
        "SmartHostAuthMechanism": Enum(
            "Microsoft.Exchange.Data.Directory.SystemConfiguration.SmtpSendConnectorConfig+AuthMechanisms",
            *c.smart_host_auth,
        ),
        "AuthenticationCredential": credential,
        "UseExternalDNSServersEnabled": False,
        "DomainSecureEnabled": False,
        "SmtpMaxMessagesPerConnection": 20,
        "ConnectorType": Enum("Microsoft.Exchange.Data.SendConnectorType", "Default", 0),
        "SmartHostsString": ",".join(c.smart_hosts),
        "AddressSpaces": Multi([AddressSpace(s) for s in c.spaces], "Microsoft.Exchange.Data.AddressSpace"),
        "ConnectedDomains": Multi([], "Microsoft.Exchange.Data.ConnectedDomain"),
        "IsScopedConnector": False,
        "IsSmtpConnector": True,
        "Comment": c.comment,
        "SourceTransportServers": Multi(
            [ad_id(s, f"CN={s},CN=Servers,{ADMIN_GROUP}") for s in SERVERS],
            "Microsoft.Exchange.Data.Directory.ADObjectId",
            ad=True,
        ),
        "MaxMessageSize": byte_size(35),
        **ad_tail(c.name, identity, dn, "ms-Exch-Routing-SMTP-Connector",
                  ["msExchConnector", "mailGateway", "msExchRoutingSMTPConnector"], created),
    }  # fmt: skip
    return top(SEND_CONNECTOR_TYPES, c.name, props)


# --- accepted domains, transport config, servers --------------------------------------------------

ACCEPTED = (("fabrikam.com", "Authoritative", 0, True), ("fabrikam.co.uk", "Authoritative", 0, False),
            ("lab.fabrikam.local", "InternalRelay", 2, False))  # fmt: skip
RECEIVE_SECURE = ("tailspintoys.com",)  # contoso.com missing: the Partner Contoso mistake
SEND_SECURE = ("contoso.com", "tailspintoys.com")


def accepted_obj(domain: str, kind: str, value: int, default: bool, created: dt.datetime) -> Obj:
    dn = f"CN={domain},CN=Accepted Domains,CN=Transport Settings,{ORG_DN}"
    identity = ad_id(domain, dn)
    props: dict[str, Value] = {
        "DomainName": SmtpDomain(domain, with_subdomains=True),
        "DomainType": Enum(
            "Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomainType", kind, value
        ),
        "MatchSubDomains": False,
        "AddressBookEnabled": kind == "Authoritative",
        "Default": default,
        "EmailOnly": False,
        "ExternallyManaged": False,
        "AuthenticationType": None,
        "InitialDomain": False,
        "SendingFromDomainDisabled": False,
        **ad_tail(domain, identity, dn, "ms-Exch-Accepted-Domain", ["msExchAcceptedDomain"], created),
    }
    return top(ACCEPTED_DOMAIN_TYPES, domain, props)


def transport_config_obj(created: dt.datetime) -> Obj:
    dn = f"CN=Transport Settings,{ORG_DN}"
    identity = ad_id("Transport Settings", dn)
    domains = "Microsoft.Exchange.Data.SmtpDomain"
    props: dict[str, Value] = {
        "MaxReceiveSize": byte_size(25),
        "MaxSendSize": byte_size(25),
        "InternalSMTPServers": Multi([], "Microsoft.Exchange.Data.IPRange"),
        "TLSReceiveDomainSecureList": Multi([SmtpDomain(d) for d in RECEIVE_SECURE], domains),
        "TLSSendDomainSecureList": Multi([SmtpDomain(d) for d in SEND_SECURE], domains),
        "SmtpClientAuthenticationDisabled": False,
        **ad_tail("Transport Settings", identity, dn, "ms-Exch-Transport-Settings",
                  ["msExchTransportSettings"], created),
    }  # fmt: skip
    return top(TRANSPORT_CONFIG_TYPES, "Transport Settings", props)


def server_obj(server: str, created: dt.datetime) -> Obj:
    dn = f"CN={server},CN=Servers,{ADMIN_GROUP}"
    identity = ad_id(server, dn)
    props: dict[str, Value] = {
        "Name": server,
        "Fqdn": f"{server.lower()}.corp.fabrikam.com",
        "Domain": AD_DOMAIN,
        "Edition": Enum(
            "Microsoft.Exchange.Data.Directory.SystemConfiguration.ServerEditionType", "Standard", 2
        ),
        "AdminDisplayVersion": ExValue(
            ("Microsoft.Exchange.Data.ServerVersion",),
            BUILD,
            {"Major": 15, "Minor": 2, "Build": 1544, "Revision": 4},
        ),
        "ServerRole": Enum(SERVER_ROLE_TYPE, "Mailbox", 2),
        "Site": ad_id(f"{AD_DOMAIN}/Configuration/Sites/London", f"CN=London,CN=Sites,{CONFIG}"),
        "IsMailboxServer": True,
        "IsClientAccessServer": False,
        "IsEdgeServer": False,
        "IsHubTransportServer": False,
        "IsFrontendTransportServer": False,
        "Identity": identity,
        "Guid": identity.props["ObjectGuid"],
        "WhenCreated": created,
        "WhenCreatedUTC": created.astimezone(dt.UTC),
    }
    return top(EXCHANGE_SERVER_TYPES, server, props)


def org_config_obj() -> Obj:
    """Get-OrganizationConfig: a kind exconn does not use, to show up as skipped in the mixed file."""
    return top(
        ("Microsoft.Exchange.Data.Directory.Management.OrganizationConfig",
         "Microsoft.Exchange.Data.Directory.ADPresentationObject", "Microsoft.Exchange.Data.ConfigurableObject",
         "System.Object"),
        ORG,
        {"Name": ORG, "IsDehydrated": False, "OAuth2ClientProfileEnabled": True, "Guid": RNG.guid()},
    )  # fmt: skip


# --- certificates ---------------------------------------------------------------------------------


def _probable_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53):  # enough for sample keys
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key derived from the seed: cryptography's own generator cannot be seeded, and
    PKCS#1 v1.5 signatures are deterministic, so the certificates' DER is byte-stable."""
    e = 65537
    while True:
        primes: list[int] = []
        while len(primes) < 2:
            cand = RNG.bits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if _probable_prime(cand) and (cand - 1) % e:
                primes.append(cand)
        p, q = primes
        if p != q:
            break
    phi = (p - 1) * (q - 1)
    d = pow(e, -1, phi)
    public = rsa.RSAPublicNumbers(e, p * q)
    private = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    )
    return private.private_key(unsafe_skip_rsa_key_validation=True)


def dn_name(text: str) -> x509.Name:
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "C": NameOID.COUNTRY_NAME, "L": NameOID.LOCALITY_NAME, "S": NameOID.STATE_OR_PROVINCE_NAME}  # fmt: skip
    parts = [p.strip().split("=", 1) for p in text.split(", ")]
    # Windows prints the most specific RDN first; X.509 stores it last.
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in reversed(parts)])


@dataclass
class Cert:
    subject: str
    issuer: str
    domains: Sequence[str]
    not_before: dt.datetime
    not_after: dt.datetime
    services: tuple[str, int]
    status: tuple[str, int]
    friendly: str
    servers: Sequence[str]
    planted: str = ""
    der: bytes = b""
    serial: int = 0

    @property
    def thumbprint(self) -> str:
        return hashlib.sha1(self.der).hexdigest().upper()  # noqa: S324 - the thumbprint *is* SHA-1

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer


def certificates() -> list[Cert]:
    r11_key = rsa_key()
    sectigo_key = rsa_key()
    certs = [
        Cert("CN=mail.fabrikam.com", LE_ISSUER, ["mail.fabrikam.com", "autodiscover.fabrikam.com", "fabrikam.com"],
             dt.datetime(2025, 5, 12, 7, 30, tzinfo=dt.UTC), dt.datetime(2035, 5, 12, 7, 30, tzinfo=dt.UTC),
             ("IMAP, POP, SMTP, IIS", 15), ("Valid", 1), "mail.fabrikam.com 2025", SERVERS,
             planted="valid public certificate (SMTP, IIS), on both servers; lifetime stretched so the "
             "samples stay valid for years"),
        Cert("CN=mail.fabrikam.com", SECTIGO_ISSUER, ["mail.fabrikam.com", "autodiscover.fabrikam.com"],
             dt.datetime(2023, 11, 30, 0, 0, tzinfo=dt.UTC), dt.datetime(2024, 11, 30, 23, 59, 59, tzinfo=dt.UTC),
             ("SMTP", 4), ("DateInvalid", 3), "mail.fabrikam.com 2024 (Sectigo)", ("EX02",),
             planted="expired 2024-11-30, still named by Default Frontend EX02's TlsCertificateName"),
        Cert("CN=Microsoft Exchange Server Auth Certificate", "CN=Microsoft Exchange Server Auth Certificate",
             [], dt.datetime(2024, 3, 1, 9, 12, 44, tzinfo=dt.UTC), dt.datetime(2029, 2, 3, 9, 12, 44, tzinfo=dt.UTC),
             ("SMTP", 4), ("Valid", 1), "Microsoft Exchange Server Auth Certificate", SERVERS),
    ]  # fmt: skip
    for server in SERVERS:
        fqdn = f"{server.lower()}.corp.fabrikam.com"
        certs.append(
            Cert(
                f"CN={server}",
                f"CN={server}",
                [server, fqdn],
                dt.datetime(2023, 5, 10, 14, 2, 11, tzinfo=dt.UTC),
                dt.datetime(2028, 5, 10, 14, 2, 11, tzinfo=dt.UTC),
                ("IMAP, POP, SMTP", 7),
                ("Valid", 1),
                "Microsoft Exchange",
                (server,),
                planted="the self-signed certificate Setup creates",
            )  # fmt: skip
        )
    for cert in certs:
        key = rsa_key()
        signer = {LE_ISSUER: r11_key, SECTIGO_ISSUER: sectigo_key}.get(cert.issuer, key)
        cert.serial = RNG.bits(127) | (1 << 120)
        builder = (
            x509.CertificateBuilder()
            .subject_name(dn_name(cert.subject))
            .issuer_name(dn_name(cert.issuer))
            .public_key(key.public_key())
            .serial_number(cert.serial)
            .not_valid_before(cert.not_before)
            .not_valid_after(cert.not_after)
        )
        if cert.domains:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(d) for d in cert.domains]), critical=False
            )
        usage = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(usage, critical=False)
        cert.der = builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return certs


def _win_date(value: dt.datetime) -> str:
    return value.astimezone(GMT).strftime("%m/%d/%Y %H:%M:%S")


def certificate_obj(cert: Cert, server: str) -> Obj:
    serial = f"{cert.serial:X}"
    to_string = (
        f"[Subject]\r\n  {cert.subject}\r\n\r\n[Issuer]\r\n  {cert.issuer}\r\n\r\n[Serial Number]\r\n  {serial}"
        f"\r\n\r\n[Not Before]\r\n  {_win_date(cert.not_before)}\r\n\r\n[Not After]\r\n  "
        f"{_win_date(cert.not_after)}\r\n\r\n[Thumbprint]\r\n  {cert.thumbprint}\r\n"
    )
    tasks = "Microsoft.Exchange.Management.SystemConfigurationTasks"
    props: dict[str, Value] = {
        "RawData": cert.der,
        "CertificateDomains": Multi(
            [SmtpDomain(d, with_subdomains=True) for d in cert.domains],
            "Microsoft.Exchange.Data.SmtpDomainWithSubdomains",
        ),
        "HasPrivateKey": True,
        "IsSelfSigned": cert.self_signed,
        "Identity": f"{server}\\{cert.thumbprint}",
        "Services": Enum(f"{tasks}.AllowedServices", *cert.services, flatten=False),
        "Status": Enum(f"{tasks}.CertificateStatus", *cert.status),
        "FriendlyName": cert.friendly,
        "Issuer": cert.issuer,
        "NotAfter": cert.not_after.astimezone(GMT),
        "NotBefore": cert.not_before.astimezone(GMT),
        "PublicKeySize": 2048,
        "SerialNumber": serial,
        "Subject": cert.subject,
        "Thumbprint": cert.thumbprint,
        "Version": 3,
    }
    return top(EXCHANGE_CERTIFICATE_TYPES, to_string, props)


# --- Exchange Online --------------------------------------------------------------------------------

EXO = "outlook.office365.com"
EXO_DC = "DC=EURPR03A001,DC=PROD,DC=OUTLOOK,DC=COM"
EXO_TENANT = f"CN=Configuration,CN=fabrikam.onmicrosoft.com,CN=ConfigurationUnits,{EXO_DC}"
CONNECTOR_TYPE = "Microsoft.Exchange.Data.Directory.SystemConfiguration.TenantConnectorType"
CONNECTOR_SOURCE = "Microsoft.Exchange.Data.Directory.SystemConfiguration.TenantConnectorSource"


def exo_id(name: str, dn: str) -> Obj:
    return AdObjectId(name, dn=dn, guid=RNG.guid(), domain="EURPR03A001.PROD.OUTLOOK.COM")


def exo_tail(name: str, identity: Obj, created: dt.datetime) -> dict[str, Value]:
    return {
        "Name": name,
        "Identity": identity,
        "Guid": identity.props["ObjectGuid"],
        "WhenCreated": created,
        "WhenChangedUTC": (created + dt.timedelta(days=3)).astimezone(dt.UTC),
        "WhenCreatedUTC": created.astimezone(dt.UTC),
        "IsValid": True,
    }


def inbound_objs() -> list[Obj]:
    out = []
    specs = [
        (f"Inbound from {HYBRID_GUID}", "OnPremises", 1, "HybridWizard", True, "mail.fabrikam.com", True,
         [], ["smtp:*;1"], False, "hybrid: RequireTls with the on-premises certificate (fine)"),
        ("Contoso Partner Inbound", "Partner", 2, "AdminUI", False, None, False,
         list(CONTOSO_IPS), ["smtp:contoso.com;1"], True, "partner connector that does not require TLS"),
    ]  # fmt: skip
    for name, ctype, cval, source, require, cert_name, restrict_cert, ips, domains, restrict_ip, _ in specs:
        identity = exo_id(name, f"CN={name},CN=Transport Settings,{EXO_TENANT}")
        props: dict[str, Value] = {
            "Enabled": True,
            "ConnectorType": Enum(CONNECTOR_TYPE, ctype, cval),
            "ConnectorSource": Enum(CONNECTOR_SOURCE, source, 2 if source == "HybridWizard" else 1),
            "Comment": "",
            "SenderIPAddresses": Multi([IPRange(i) for i in ips], "Microsoft.Exchange.Data.IPRange"),
            "SenderDomains": Multi(
                [AddressSpace(d) for d in domains], "Microsoft.Exchange.Data.AddressSpace"
            ),
            "AssociatedAcceptedDomains": Multi([], "Microsoft.Exchange.Data.SmtpDomainWithSubdomains"),
            "RequireTls": require,
            "RestrictDomainsToIPAddresses": restrict_ip,
            "RestrictDomainsToCertificate": restrict_cert,
            "CloudServicesMailEnabled": ctype == "OnPremises",
            "TreatMessagesAsInternal": False,
            "TlsSenderCertificateName": (
                ExValue(
                    ("Microsoft.Exchange.Data.TlsCertificate",), cert_name, {"CertificateName": cert_name}
                )
                if cert_name
                else None
            ),
            **exo_tail(name, identity, dt.datetime(2024, 9, 18, 13, 5, 21, tzinfo=BST)),
        }
        out.append(top(INBOUND_CONNECTOR_TYPES, name, props, computer=EXO))
    return out


def exo_expectations() -> list[tuple[str, str, tuple[Expect, ...], str]]:
    """name, what is planted, the findings to expect, why none: for the README's `exo/` table."""
    return [
        (f"Inbound from {HYBRID_GUID}", "OnPremises, RequireTls with TlsSenderCertificateName "
         "mail.fabrikam.com, as the Hybrid Configuration Wizard sets it up", (),
         "the on-premises servers are identified by their certificate, over TLS"),
        ("Contoso Partner Inbound", "Partner connector for contoso.com restricted to Contoso's IPs, "
         "RequireTls false", (Expect("EXC-O004", "medium", "mail from contoso.com is accepted without TLS"),), ""),
        ("To Fabrikam on-premises", "OnPremises outbound to the smart host mail.fabrikam.com, TlsSettings "
         "CertificateValidation with an empty TlsDomain: the chain is validated, the name is not", (),
         "exconn takes CertificateValidation (a trusted chain) as a validated route"),
    ]  # fmt: skip


def outbound_objs() -> list[Obj]:
    name = "To Fabrikam on-premises"
    identity = exo_id(name, f"CN={name},CN=Transport Settings,{EXO_TENANT}")
    props: dict[str, Value] = {
        "Enabled": True,
        "UseMXRecord": False,
        "Comment": "",
        "ConnectorType": Enum(CONNECTOR_TYPE, "OnPremises", 1),
        "ConnectorSource": Enum(CONNECTOR_SOURCE, "AdminUI", 1),
        "RecipientDomains": Multi(
            [SmtpDomain(d, with_subdomains=True) for d in ("fabrikam.com", "fabrikam.co.uk")],
            "Microsoft.Exchange.Data.SmtpDomainWithSubdomains",
        ),
        "SmartHosts": Multi([SmartHost("mail.fabrikam.com")], "Microsoft.Exchange.Data.SmartHost"),
        "TlsDomain": None,
        "TlsSettings": Enum("Microsoft.Exchange.Data.TlsAuthLevel", "CertificateValidation", 2),
        "IsTransportRuleScoped": False,
        "RouteAllMessagesViaOnPremises": False,
        "CloudServicesMailEnabled": True,
        "AllAcceptedDomains": False,
        "SenderRewritingEnabled": False,
        "TestMode": False,
        "IsValidated": True,
        **exo_tail(name, identity, dt.datetime(2024, 9, 18, 13, 9, 2, tzinfo=BST)),
    }
    return [top(OUTBOUND_CONNECTOR_TYPES, name, props, computer=EXO)]


def exo_accepted_objs() -> list[Obj]:
    out = []
    domains = (("fabrikam.com", True), ("fabrikam.co.uk", False), ("fabrikam.onmicrosoft.com", False),
               ("fabrikam.mail.onmicrosoft.com", False))  # fmt: skip
    for domain, default in domains:
        identity = exo_id(domain, f"CN={domain},CN=Accepted Domains,CN=Transport Settings,{EXO_TENANT}")
        props: dict[str, Value] = {
            "DomainName": SmtpDomain(domain, with_subdomains=True),
            "DomainType": Enum(
                "Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomainType", "Authoritative", 0
            ),
            "Default": default,
            "InitialDomain": domain == "fabrikam.onmicrosoft.com",
            **exo_tail(domain, identity, dt.datetime(2024, 9, 2, 10, 0, tzinfo=BST)),
        }
        out.append(top(ACCEPTED_DOMAIN_TYPES, domain, props, computer=EXO))
    return out


# --- files ----------------------------------------------------------------------------------------


def manifest(
    environment: str, organization: str, build: str | None, commands: list[dict[str, object]]
) -> bytes:
    data = {
        "format": "exconn-snapshot",
        "version": 1,
        "environment": environment,
        "organization": organization,
        "exchangeBuild": build,
        "createdUtc": EXPORT_TIME.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "computerName": "EX01" if environment == "ExchangeServer" else "ADMIN-PC07",
        "powerShellVersion": "5.1.17763.6414",
        "scriptVersion": "1.0",
        "commands": commands,
    }
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def command(cmdlet: str, file: str | None, count: int, server: str | None = None) -> dict[str, object]:
    return {"cmdlet": cmdlet, "server": server, "file": file, "count": count, "errors": []}


SEND_SELECT = ["Identity", "Name", "Enabled", "AddressSpaces", "SmartHosts", "DNSRoutingEnabled",
               "IgnoreSTARTTLS", "RequireTLS", "TlsAuthLevel", "TlsDomain"]  # fmt: skip
RECEIVE_SELECT = ["Identity", "Name", "Server", "TransportRole", "Bindings", "RemoteIPRanges",
                  "AuthMechanism", "PermissionGroups", "RequireTLS", "Enabled"]  # fmt: skip


def build(out: Path) -> dict[str, bytes]:
    """All sample files, path (relative to `out`) -> bytes."""
    files: dict[str, bytes] = {}
    RNG.reset(SEED + 1)  # so build() gives the same bytes however often it runs in one process
    created = dt.datetime(2023, 5, 10, 15, 4, 33, tzinfo=BST)

    recv_specs = receive_connectors()
    recv_objs = {s: [receive_obj(s, c, created) for c in cs] for s, cs in recv_specs.items()}
    send_specs = send_connectors()
    send_objs = [send_obj(c, created + dt.timedelta(days=30 + i)) for i, c in enumerate(send_specs)]
    accepted = [accepted_obj(*a, created) for a in ACCEPTED]
    transport = [transport_config_obj(created)]
    servers = [server_obj(s, created) for s in SERVERS]
    certs = certificates()
    cert_objs = {s: [certificate_obj(c, s) for c in certs if s in c.servers] for s in SERVERS}
    all_recv = recv_objs["EX01"] + recv_objs["EX02"]

    live = {"serialization_data": "short", "seed": SEED}

    def clixml(objs: list[Obj], form: str = "live", encoding: str = "utf-16", **kw: object) -> bytes:  # noqa: E306
        return encode(to_xml(objs, form, **{**live, **kw}), encoding)  # type: ignore[arg-type]

    fab = {
        "Get-SendConnector.xml": send_objs,
        "Get-ReceiveConnector.xml": all_recv,
        "Get-AcceptedDomain.xml": accepted,
        "Get-TransportConfig.xml": transport,
        "Get-ExchangeCertificate-EX01.xml": cert_objs["EX01"],
        "Get-ExchangeCertificate-EX02.xml": cert_objs["EX02"],
        "Get-ExchangeServer.xml": servers,
    }
    for name, objs in fab.items():
        files[f"fabrikam/{name}"] = clixml(objs)
    files["fabrikam/manifest.json"] = manifest(
        "ExchangeServer",
        ORG,
        BUILD,
        [
            command("Get-OrganizationConfig", None, 1),
            command("Get-ExchangeServer", "Get-ExchangeServer.xml", len(servers)),
            command("Get-SendConnector", "Get-SendConnector.xml", len(send_objs)),
            command("Get-ReceiveConnector", "Get-ReceiveConnector.xml", len(all_recv)),
            command("Get-AcceptedDomain", "Get-AcceptedDomain.xml", len(accepted)),
            command("Get-TransportConfig", "Get-TransportConfig.xml", 1),
            *(
                command("Get-ExchangeCertificate", f"Get-ExchangeCertificate-{s}.xml", len(cert_objs[s]), s)
                for s in SERVERS
            ),
        ],
    )

    files["forms/Get-SendConnector.deserialized.xml"] = clixml(
        send_objs, "deserialized", "utf-8-sig", serialization_data="none"
    )
    files["forms/Get-ReceiveConnector.deserialized.xml"] = clixml(
        all_recv, "deserialized", "utf-8-sig", serialization_data="none"
    )
    files["forms/Get-SendConnector.selected.xml"] = clixml(
        send_objs, "selected", "utf-8", select=SEND_SELECT, serialization_data="none", newline="\n"
    )
    files["forms/Get-ReceiveConnector.selected.xml"] = clixml(
        all_recv, "selected", "utf-8", select=RECEIVE_SELECT, nested_form="deserialized",
        serialization_data="none", newline="\n",
    )  # fmt: skip
    files["forms/mixed.xml"] = clixml(
        [org_config_obj(), *send_objs, *recv_objs["EX02"], *accepted, *transport], "live", "utf-8-sig"
    )

    exo_commands = []
    for name, objs in (
        ("Get-InboundConnector.xml", inbound_objs()),
        ("Get-OutboundConnector.xml", outbound_objs()),
        ("Get-AcceptedDomain.xml", exo_accepted_objs()),
    ):
        files[f"exo/{name}"] = clixml(objs, "deserialized", "utf-8-sig", serialization_data="none")
        exo_commands.append(command(name.removesuffix(".xml"), name, len(objs)))
    files["exo/manifest.json"] = manifest(
        "ExchangeOnline",
        "fabrikam.onmicrosoft.com",
        None,
        [command("Get-OrganizationConfig", None, 1), *exo_commands],
    )

    files.update(bad_files(files["fabrikam/Get-ReceiveConnector.xml"]))
    files["README.md"] = readme(recv_specs, send_specs, certs).encode("utf-8")
    return files


def big_export(path: Path, connectors: int) -> int:
    """Stream a large live export to `path` (UTF-8, as PowerShell 7 writes it) for the benchmarks:
    per server the five receive connectors Setup creates plus one of the samples' send connectors,
    servers `SRV00000`, `SRV00001`..., with realistic SerializationData blobs (about 70 % of the file,
    as in real exports). Deterministic; returns the number of connectors written."""
    RNG.reset(SEED + 2)
    created = dt.datetime(2023, 5, 10, 15, 4, 33, tzinfo=BST)
    sends = send_connectors()
    servers = max(1, connectors // 6)

    def objects() -> Iterator[Obj]:
        for n in range(servers):
            server = f"SRV{n:05d}"
            for c in default_receive(server):
                yield receive_obj(server, c, created)
            send = sends[n % len(sends)]
            yield send_obj(replace(send, name=f"{send.name} {server}"), created)

    write_file(path, objects(), "live", "utf-8", serialization_data="realistic", seed=SEED)
    return servers * 6


def bad_files(receive_utf16: bytes) -> dict[str, bytes]:
    ns = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'
    lol = "\n".join(f'  <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    fl = (
        "\r\n\r\nRunspaceId                                : " + str(RUNSPACE) + "\r\n"
        "AuthMechanism                             : Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer\r\n"
        "Bindings                                  : {[::]:25, 0.0.0.0:25}\r\n"
        "DomainSecureEnabled                       : False\r\n"
        "Fqdn                                      : mail.fabrikam.com\r\n"
        "TlsCertificateName                        : <I>CN=R11, O=Let's Encrypt, C=US<S>CN=mail.fabrikam.com\r\n"
        "Enabled                                   : True\r\n"
        "PermissionGroups                          : AnonymousUsers, ExchangeServers, ExchangeLegacyServers\r\n"
        "RemoteIPRanges                            : {::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff, 0.0.0.0-255.255.255.255}\r\n"
        "RequireTLS                                : False\r\n"
        "Server                                    : EX01\r\n"
        "TransportRole                             : FrontendTransport\r\n"
        "Name                                      : Default Frontend EX01\r\n"
        "Identity                                  : EX01\\Default Frontend EX01\r\n\r\n\r\n"
    )  # fmt: skip
    csv = (
        "#TYPE Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector\r\n"
        '"AuthMechanism","Bindings","Enabled","Fqdn","PermissionGroups","RemoteIPRanges","RequireTLS",'
        '"Server","TransportRole","Name","Identity"\r\n'
        '"Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer",'
        '"Microsoft.Exchange.Data.MultiValuedProperty`1[Microsoft.Exchange.Data.IPBinding]","True",'
        '"mail.fabrikam.com","AnonymousUsers, ExchangeServers, ExchangeLegacyServers",'
        '"Microsoft.Exchange.Data.MultiValuedProperty`1[Microsoft.Exchange.Data.IPRange]","False","EX01",'
        '"FrontendTransport","Default Frontend EX01","EX01\\Default Frontend EX01"\r\n'
    )
    binary_rng = random.Random(SEED + 1)  # noqa: S311
    cut = len(receive_utf16) * 2 // 5 // 2 * 2  # mid-document, on a UTF-16 code unit boundary
    return {
        "bad/xxe.xml": (
            '<?xml version="1.0"?>\n<!DOCTYPE Objs [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n'
            f'<Objs Version="1.1.0.1" {ns}>\n  <S>&xxe;</S>\n</Objs>\n'
        ).encode(),
        "bad/billion-laughs.xml": (
            f'<?xml version="1.0"?>\n<!DOCTYPE Objs [\n  <!ENTITY lol0 "lol">\n{lol}\n]>\n'
            f'<Objs Version="1.1.0.1" {ns}>\n  <S>&lol9;</S>\n</Objs>\n'
        ).encode(),
        "bad/truncated.xml": receive_utf16[:cut],
        "bad/empty.xml": b"",
        "bad/binary.xml": b"MZ\x90\x00\x03\x00\x00\x00" + binary_rng.randbytes(1016),
        "bad/Get-ReceiveConnector-FormatList.txt": encode(fl, "utf-16"),
        "bad/receive-connectors.csv": encode(csv, "utf-8-sig"),
        "bad/wrong-root.xml": b'<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n  <appSettings />\n'
        b"</configuration>\n",
    }


def readme(recv: dict[str, list[Recv]], send: list[Send], certs: list[Cert]) -> str:
    rows_recv = "\n".join(
        f"| `{s}\\{c.name}` | {c.planted} | {expected(c.expect, c.quiet)} |"
        for s, cs in recv.items()
        for c in cs
        if c.planted
    )
    rows_send = "\n".join(f"| `{c.name}` | {c.planted} | {expected(c.expect, c.quiet)} |" for c in send)
    rows_exo = "\n".join(
        f"| `{name}` | {planted} | {expected(expect, quiet)} |"
        for name, planted, expect, quiet in exo_expectations()
    )
    rows_cert = "\n".join(
        f"| {', '.join(c.servers)} | `{c.subject}` issued by `{c.issuer}` | {c.not_after:%Y-%m-%d} | "
        f"{c.services[0]} | `{c.thumbprint}` | {c.planted} |"
        for c in certs
    )
    return f"""# exconn samples: the Fabrikam organisation

Generated by `python scripts/make_samples.py` (fixed seed and timestamps: re-running gives
byte-identical files; do not edit by hand). A made-up organisation, not a copy of any real export.
The `.xml` files must stay byte-exact (UTF-16 and CRLF included): treat them as binary in git.

Fabrikam: domains `fabrikam.com` (default, authoritative), `fabrikam.co.uk` (authoritative),
`lab.fabrikam.local` (internal relay); two Exchange 2019 CU14 Mailbox servers `EX01`/`EX02`
(`ex01.corp.fabrikam.com`, `ex02.corp.fabrikam.com`, AD forest `corp.fabrikam.com`), hybrid with
Exchange Online (`fabrikam.onmicrosoft.com`). Exported on {EXPORT_TIME:%Y-%m-%d %H:%M} UTC.

## Layout
| path | what | form, encoding |
|---|---|---|
| `fabrikam/` | what `scripts/Export-ExconnSnapshot.ps1` writes inside the EMS on EX01: `manifest.json` + one file per cmdlet (`Get-SendConnector.xml`, `Get-ReceiveConnector.xml` (both servers), `Get-AcceptedDomain.xml`, `Get-TransportConfig.xml`, `Get-ExchangeCertificate-EX01.xml`, `Get-ExchangeCertificate-EX02.xml`, `Get-ExchangeServer.xml`) | live types, UTF-16LE with BOM, CRLF, short `SerializationData` blobs |
| `forms/*.deserialized.xml` | the same send / receive connectors as plain remoting delivers them: `Deserialized.` types, Exchange values flattened to strings (`<S N="AuthMechanism">Tls, ...</S>`, AddressSpaces an `LST` of `<S>`) | UTF-8 with BOM, no blobs |
| `forms/*.selected.xml` | `Select-Object` output (`Selected.…` PSCustomObject, note properties in `MS`). Send: {", ".join(SEND_SELECT)} (nested values live, as inside EMS). Receive: {", ".join(RECEIVE_SELECT)} (nested values as strings, as over plain remoting). Properties not selected (TlsCertificateName, SmartHostAuthMechanism, DomainSecureEnabled, Fqdn…) are *unknown*: rules that need them must say they could not judge | UTF-8 without BOM, LF |
| `forms/mixed.xml` | several kinds in one file: Get-OrganizationConfig (a kind exconn does not use: must be listed as skipped), the send connectors, EX02's receive connectors, the accepted domains, the transport config | live, UTF-8 with BOM, short blobs |
| `exo/` | Exchange Online session: `Get-InboundConnector.xml`, `Get-OutboundConnector.xml`, `Get-AcceptedDomain.xml`, `manifest.json` | deserialized, UTF-8 with BOM |
| `bad/` | hostile or broken inputs; each must be refused with exit status 2 and a one-line reason | see below |

Traps kept on purpose, as in real exports: TN and Obj RefIds are file-wide (`OrganizationId` is
written once and `<Ref>`ed by every later object; `Id` is a `<Ref>` to `Identity`);
`PSComputerName` is the EMS session's server (`{SESSION_SERVER}`) even in
`Get-ExchangeCertificate-EX02.xml` — the certificate's server is in its `Identity` (`EX02\\<thumbprint>`)
and in the manifest's `server` field; the certificates carry real X.509 DER in `RawData` plus the
usual properties (`Services` stays an enum object even in deserialized form).

## Mistakes planted, and the findings to expect
Each `### folder/` below lists every finding `exconn audit --offline samples/<folder>` prints, as
rule, target and severity (tests/test_samples.py checks the tables against the tool, both ways).
Internet partners have registrable names under public suffixes, lab systems lab names
(`.local`): a reserved name such as `.example` counts as lab-only and lowers the severity.

### `fabrikam/`
Receive connectors (EX01 and EX02 otherwise have the five default connectors exactly as Setup
creates them, with no finding; `Outbound Proxy Frontend` has `DomainSecureEnabled` true by default
and must not be reported as a domain-security mistake):

| connector | planted | expected finding |
|---|---|---|
{rows_recv}

Send connectors (all sourced on EX01 and EX02):

| connector | planted | expected finding |
|---|---|---|
{rows_send}

Transport config: `TLSReceiveDomainSecureList` = {", ".join(RECEIVE_SECURE)} (contoso.com missing,
see `Partner Contoso`); `TLSSendDomainSecureList` = {", ".join(SEND_SECURE)}.

Certificates (`Get-ExchangeCertificate -Server EX01/EX02`):

| servers | certificate | NotAfter | Services | thumbprint | note |
|---|---|---|---|---|---|
{rows_cert}

### `exo/`
The Exchange Online side of the hybrid:

| connector | planted | expected finding |
|---|---|---|
{rows_exo}

## bad/
| file | what | expected reason |
|---|---|---|
| `xxe.xml` | DOCTYPE with an external entity (`file:///etc/passwd`) | DTD/entities refused, nothing read |
| `billion-laughs.xml` | nested entity expansion | DTD/entities refused, no expansion |
| `truncated.xml` | `fabrikam/Get-ReceiveConnector.xml` cut at 40 %, UTF-16LE | truncated XML |
| `empty.xml` | 0 bytes | empty file |
| `binary.xml` | an executable-looking header and random bytes | not text / not XML |
| `Get-ReceiveConnector-FormatList.txt` | `Get-ReceiveConnector \\| fl > file.txt` (UTF-16LE, as Out-File writes) | Format-List text: say to use Export-Clixml |
| `receive-connectors.csv` | `Export-Csv` output (multi-valued properties lost as type names) | not CLIXML |
| `wrong-root.xml` | well-formed XML that is not CLIXML | not CLIXML (root is not `Objs`) |
"""


def main(argv: Sequence[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "samples"
    files = build(out)
    for rel, data in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
