"""The converter (PSObject -> model) and load() on real exports and on every form by hand."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

import pytest

from exconn.clixml.objects import PSObject
from exconn.clixml.reader import iter_clixml
from exconn.errors import InputError
from exconn.model import (
    UNKNOWN,
    AcceptedDomain,
    AcceptedDomainType,
    AddressSpace,
    AuthMechanism,
    Binding,
    CertificateNameStatus,
    ExchangeCertificate,
    ExchangeServer,
    InboundConnector,
    ModelObject,
    OutboundConnector,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    Skipped,
    SmartHostAuthMechanism,
    TlsAuthLevel,
    TransportConfig,
    TransportRole,
)
from exconn.sources.convert import convert, convert_all
from exconn.sources.files import load
from exconn.sources.values import (
    parse_address_space,
    parse_binding,
    parse_certificate_name,
    parse_ip_range,
)

REAL = Path(__file__).parents[2] / "shared/fixtures/real"
NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'
SYSCONFIG = "Microsoft.Exchange.Data.Directory.SystemConfiguration"


def real_dir() -> Path:
    if not REAL.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{REAL} is missing: CI must have the real exports")
        pytest.skip(f"{REAL} is missing (set CI to make this a failure)")
    return REAL


def real(name: str) -> Path:
    return real_dir() / name


def converted(path: Path) -> list[ModelObject | Skipped]:
    return convert_all(iter_clixml(path), path=str(path))


def models(path: Path) -> list[ModelObject]:
    return [r for r in converted(path) if not isinstance(r, Skipped)]


def write(tmp_path: Path, body: str, name: str = "export.xml") -> Path:
    path = tmp_path / name
    path.write_text(f'<Objs Version="1.1.0.1" {NS}>{body}</Objs>', encoding="utf-8")
    return path


# --- real exports ----------------------------------------------------------------------------------


def test_real_send_connector_mail_to_o365() -> None:
    (connector,) = models(real("CSS-Exchange_GetSendConnector.xml"))
    assert isinstance(connector, SendConnector)
    assert (connector.identity, connector.name) == ("Mail to O365", "Mail to O365")
    assert connector.source.form == "live" and connector.source.index == 0
    assert connector.require_tls is False
    assert connector.tls_auth_level is None
    assert connector.cloud_services_mail_enabled is True
    assert connector.ignore_starttls is False
    assert connector.address_spaces == (AddressSpace("SMTP", "*", 1, "SMTP:*;1"),)
    assert connector.smart_hosts == ("microsoft-com.mail.protection.outlook.com",)
    assert connector.dns_routing_enabled is False
    name = connector.tls_certificate_name
    assert name is not UNKNOWN and name is not None
    assert (name.issuer, name.subject, name.common_name) == ("CN=localhost", "CN=localhost", "localhost")
    assert name.status is CertificateNameStatus.OK
    assert connector.smart_host_auth_mechanism is SmartHostAuthMechanism.NONE
    assert connector.authentication_credential_set is False
    assert connector.fqdn is None
    assert connector.source_transport_servers == ("WIN-CTD3L0RGEN4",)
    # What a scoped connector taking over its route must copy.
    assert connector.frontend_proxy_enabled is False
    assert connector.source_ip_address == "0.0.0.0"
    assert connector.use_external_dns_servers_enabled is False
    assert connector.max_message_size == 36700160  # `35 MB (36,700,160 bytes)`
    assert connector.protocol_logging_level == "None"
    assert connector.connection_inactivity_timeout == "00:10:00"
    assert connector.port == 25


def test_byte_size_and_time_span() -> None:
    import datetime as dt

    from exconn.sources.values import byte_size, time_span

    assert byte_size("Unlimited") == "Unlimited" and byte_size("10 MB (10,485,760 bytes)") == 10485760
    assert byte_size(36700160) == 36700160
    assert time_span(dt.timedelta(days=1, minutes=10)) == "1.00:10:00" and time_span("00:10:00") == "00:10:00"
    for bad in ("lots", "10:00"):
        with pytest.raises(ValueError):
            byte_size(bad) if bad == "lots" else time_span(bad)


def test_real_send_connector_relay_to_m365() -> None:
    (connector,) = models(real("CSS-Exchange_GetSendConnectorConfiguredToRelayToM365.xml"))
    assert isinstance(connector, SendConnector)
    assert connector.identity == "My company to Office 365"
    assert connector.require_tls is True
    assert connector.tls_auth_level is TlsAuthLevel.CERTIFICATE_VALIDATION
    assert connector.fqdn == "mail.contoso.com"
    assert connector.tls_certificate_name is None
    (space,) = connector.address_spaces if connector.address_spaces is not UNKNOWN else ()
    assert (space.type, space.raw, space.is_internet) == ("smtp", "smtp:*;1", True)


A = AuthMechanism
P = PermissionGroups
DEFAULT_AUTH = A.TLS | A.INTEGRATED | A.BASIC_AUTH | A.BASIC_AUTH_REQUIRE_TLS | A.EXCHANGE_SERVER
RECEIVE = {
    "Default": (DEFAULT_AUTH, P.EXCHANGE_USERS | P.EXCHANGE_SERVERS | P.EXCHANGE_LEGACY_SERVERS, 2525,
                TransportRole.HUB, False, ()),
    "Client Proxy": (DEFAULT_AUTH, P.EXCHANGE_USERS | P.EXCHANGE_SERVERS, 465, TransportRole.HUB, False, ()),
    "Default Frontend": (DEFAULT_AUTH, P.ANONYMOUS_USERS | P.EXCHANGE_SERVERS | P.EXCHANGE_LEGACY_SERVERS, 25,
                         TransportRole.FRONTEND, True, ("fabrikam.com:AcceptCloudServicesMail",)),
    "Outbound Proxy Frontend": (DEFAULT_AUTH, P.EXCHANGE_SERVERS, 717, TransportRole.FRONTEND, True, ()),
    "Client Frontend": (A.TLS | A.INTEGRATED | A.BASIC_AUTH | A.BASIC_AUTH_REQUIRE_TLS, P.EXCHANGE_USERS, 587,
                        TransportRole.FRONTEND, False, ()),
}  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["CSS-Exchange_GetReceiveConnector.xml", "CSS-Exchange_GetReceiveConnectorEmptyTlsCertificateName.xml"],
)
def test_real_receive_connectors(name: str) -> None:
    results = converted(real(name))
    assert not [r for r in results if isinstance(r, Skipped)]
    connectors = {
        c.name.removesuffix(" WIN-CTD3L0RGEN4"): c for c in results if isinstance(c, ReceiveConnector)
    }
    assert set(connectors) == set(RECEIVE)
    for short, (auth, groups, port, role, domain_secure, capabilities) in RECEIVE.items():
        c = connectors[short]
        assert c.identity == f"WIN-CTD3L0RGEN4\\{short} WIN-CTD3L0RGEN4"
        assert c.server == "WIN-CTD3L0RGEN4"
        assert c.auth_mechanism == auth
        assert c.permission_groups == groups
        assert set(c.bindings if c.bindings is not UNKNOWN else ()) == {
            Binding("0.0.0.0", port, f"0.0.0.0:{port}"),
            Binding("::", port, f"[::]:{port}"),
        }
        assert c.transport_role is role
        assert c.domain_secure_enabled is domain_secure
        assert c.tls_domain_capabilities == capabilities
        assert c.require_tls is False and c.enabled is True
        ranges = c.remote_ip_ranges if c.remote_ip_ranges is not UNKNOWN else ()
        assert len(ranges) == 2 and all(r.is_everything for r in ranges)
        assert c.extended_protection_policy == "None"
    frontend = connectors["Default Frontend"].tls_certificate_name
    if "Empty" in name:
        assert frontend is None
    else:
        assert frontend is not UNKNOWN and frontend is not None
        assert frontend.common_name == "WIN-CTD3L0RGEN4"
    assert connectors["Default"].fqdn == "WIN-CTD3L0RGEN4.exlab.dom"


def test_real_certificates_from_raw_data() -> None:
    certificates = models(real("CSS-Exchange_GetExchangeCertificate_sameLab.xml"))
    assert all(isinstance(c, ExchangeCertificate) for c in certificates)
    by_thumbprint = {c.thumbprint: c for c in certificates if isinstance(c, ExchangeCertificate)}
    # The thumbprints Exchange printed in each ToString, recomputed from the DER.
    assert set(by_thumbprint) == {
        "2D10A746D6BB8D795F1679AEBD89D5D2AE583CB7",
        "611C687DFC4343A5A03E0005A1EC6E9B6AFF586D",
        "E267D459A0FB53D0EF225C11FAC062D522648C09",
        "3341CEAF3DF4D3A9527EC98BDD53C54ECC3E0620",
    }
    server_cert = by_thumbprint["611C687DFC4343A5A03E0005A1EC6E9B6AFF586D"]
    assert server_cert.subject == "CN=WIN-CTD3L0RGEN4"
    assert server_cert.issuer == "CN=WIN-CTD3L0RGEN4"
    assert server_cert.not_before == dt.datetime(2021, 8, 6, 13, 56, 14, tzinfo=dt.UTC)
    assert server_cert.not_after == dt.datetime(2026, 8, 6, 13, 56, 14, tzinfo=dt.UTC)
    assert server_cert.certificate_domains == ("WIN-CTD3L0RGEN4", "WIN-CTD3L0RGEN4.exlab.dom")
    assert server_cert.server == "win-ctd3l0rgen4.exlab.dom"
    assert server_cert.services is UNKNOWN and server_cert.status is UNKNOWN
    auth_cert = by_thumbprint["2D10A746D6BB8D795F1679AEBD89D5D2AE583CB7"]
    assert auth_cert.not_after == dt.datetime(2026, 7, 11, 13, 59, 5, tzinfo=dt.UTC)
    assert by_thumbprint["3341CEAF3DF4D3A9527EC98BDD53C54ECC3E0620"].not_after == dt.datetime(
        2031, 8, 4, 11, 58, 42, tzinfo=dt.UTC
    )


def test_real_unknown_kind_is_skipped() -> None:
    (result,) = converted(real("CSS-Exchange_E19_GetHybridConfiguration.xml"))
    assert isinstance(result, Skipped)
    assert result.type_name == f"{SYSCONFIG}.HybridConfiguration"
    assert result.identity == "Hybrid Configuration"
    assert "not a kind exconn reads" in result.reason


def test_load_real_folder_dedupes_the_two_receive_exports() -> None:
    organization = load([real_dir()])
    assert len(organization.send_connectors) == 2
    assert len(organization.receive_connectors) == 5
    assert len(organization.certificates) == 4
    assert len(organization.sources) == 6
    duplicates = [s for s in organization.skipped if s.reason.startswith("duplicate of the ReceiveConnector")]
    assert len(duplicates) == 5
    assert all("EmptyTlsCertificateName" in s.source.path for s in duplicates)


# --- the deserialized form ---------------------------------------------------------------------------

GEOTRUST = "CN=GeoTrust TLS RSA CA G1, OU=www.digicert.com, O=DigiCert Inc, C=US"
CAPABILITIES = "contoso.com:AcceptOorgProtocol,AcceptCloudServicesMail, fabrikam.com:AcceptCloudServicesMail"
DESERIALIZED = f"""
<Obj RefId="0"><TN RefId="0"><T>Deserialized.{SYSCONFIG}.ReceiveConnector</T>
  <T>Deserialized.{SYSCONFIG}.ADConfigurationObject</T><T>Deserialized.System.Object</T></TN>
  <ToString>EX1\\Partner Relay</ToString>
  <Props>
    <S N="AuthMechanism">Tls, BasicAuth, BasicAuthRequireTLS</S>
    <Obj N="PermissionGroups" RefId="1"><TN RefId="1">
      <T>Deserialized.Microsoft.Exchange.Data.PermissionGroups</T>
      <T>Deserialized.System.Enum</T></TN><ToString>AnonymousUsers, Partners</ToString><I32>17</I32></Obj>
    <Obj N="Bindings" RefId="2"><TN RefId="2">
      <T>Deserialized.Microsoft.Exchange.Data.MultiValuedProperty`1</T></TN>
      <LST><S>0.0.0.0:25</S><S>[2001:db8::1]:25</S></LST></Obj>
    <S N="RemoteIPRanges">{{192.0.2.0/24, 198.51.100.7, 2001:db8::/32, 10.0.0.1-10.0.0.9}}</S>
    <S N="TlsCertificateName">&lt;S&gt;O=Contoso, C=US</S>
    <S N="TransportRole">FrontendTransport</S>
    <S N="TlsDomainCapabilities">{CAPABILITIES}</S>
    <B N="RequireTLS">true</B>
    <S N="Server">EX1</S>
    <S N="Name">Partner Relay</S>
    <Nil N="Fqdn" />
  </Props></Obj>
<Obj RefId="3"><TN RefId="3"><T>Deserialized.{SYSCONFIG}.SmtpSendConnectorConfig</T>
  <T>Deserialized.System.Object</T></TN><ToString>Outbound to Office 365</ToString>
  <Props>
    <Obj N="AddressSpaces" RefId="4"><TNRef RefId="2" /><LST><S>smtp:contoso.mail.onmicrosoft.com;1</S>
      <S>X400:c=US;a= ;p=Contoso;o=Exchange;5</S></LST></Obj>
    <S N="TlsAuthLevel">DomainValidation</S>
    <S N="TlsDomain">mail.protection.outlook.com</S>
    <B N="RequireTLS">true</B>
    <S N="TlsCertificateName">&lt;I&gt;{GEOTRUST}&lt;S&gt;CN=mail.contoso.com</S>
    <S N="SmartHostAuthMechanism">BasicAuth</S>
    <S N="AuthenticationCredential">System.Management.Automation.PSCredential</S>
    <S N="SmartHosts">a.example, b.example</S>
    <S N="Identity">Outbound to Office 365</S>
    <I32 N="Port">587</I32>
  </Props></Obj>"""


def test_deserialized_form_with_flattened_values(tmp_path: Path) -> None:
    receive, send = models(write(tmp_path, DESERIALIZED))
    assert isinstance(receive, ReceiveConnector) and isinstance(send, SendConnector)
    assert receive.source.form == send.source.form == "deserialized"
    assert receive.identity == "EX1\\Partner Relay"
    assert receive.auth_mechanism == A.TLS | A.BASIC_AUTH | A.BASIC_AUTH_REQUIRE_TLS
    assert receive.permission_groups == P.ANONYMOUS_USERS | P.PARTNERS
    assert receive.bindings == (
        Binding("0.0.0.0", 25, "0.0.0.0:25"),
        Binding("2001:db8::1", 25, "[2001:db8::1]:25"),
    )
    ranges = receive.remote_ip_ranges if receive.remote_ip_ranges is not UNKNOWN else ()
    assert [(str(r.lower), str(r.upper)) for r in ranges] == [
        ("192.0.2.0", "192.0.2.255"),
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
        ("10.0.0.1", "10.0.0.9"),
    ]
    name = receive.tls_certificate_name
    assert name is not UNKNOWN and name is not None
    assert (name.issuer, name.subject, name.status) == (
        None,
        "O=Contoso, C=US",
        CertificateNameStatus.NO_COMMON_NAME,
    )
    assert receive.transport_role is TransportRole.FRONTEND
    assert receive.tls_domain_capabilities == (
        "contoso.com:AcceptOorgProtocol,AcceptCloudServicesMail",
        "fabrikam.com:AcceptCloudServicesMail",
    )
    assert receive.require_tls is True and receive.fqdn is None
    assert receive.enabled is UNKNOWN  # not in this export: unknown, never a default

    assert send.identity == "Outbound to Office 365"
    assert send.address_spaces == (
        AddressSpace("smtp", "contoso.mail.onmicrosoft.com", 1, "smtp:contoso.mail.onmicrosoft.com;1"),
        AddressSpace("X400", "c=US;a= ;p=Contoso;o=Exchange", 5, "X400:c=US;a= ;p=Contoso;o=Exchange;5"),
    )
    assert send.tls_auth_level is TlsAuthLevel.DOMAIN_VALIDATION
    assert send.tls_domain == "mail.protection.outlook.com"
    certificate_name = send.tls_certificate_name
    assert certificate_name is not UNKNOWN and certificate_name is not None
    assert certificate_name.common_name == "mail.contoso.com"
    assert certificate_name.issuer == GEOTRUST
    assert send.smart_host_auth_mechanism is SmartHostAuthMechanism.BASIC_AUTH
    assert send.authentication_credential_set is True
    assert send.smart_hosts == ("a.example", "b.example")
    assert send.port == 587
    assert send.ignore_starttls is UNKNOWN


# --- the Select-Object form ------------------------------------------------------------------------

SELECTED = f"""
<Obj RefId="0"><TN RefId="0"><T>Selected.{SYSCONFIG}.ReceiveConnector</T>
  <T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>
  <ToString>@{{Identity=EX1\\Default Frontend EX1; AuthMechanism=Tls, Integrated}}</ToString>
  <MS><S N="Identity">EX1\\Default Frontend EX1</S><S N="AuthMechanism">Tls, Integrated</S>
  <Obj N="Bindings" RefId="1"><TN RefId="1"><T>System.Object[]</T></TN><LST><S>0.0.0.0:25</S></LST></Obj>
    </MS></Obj>
<Obj RefId="2"><TN RefId="2"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>
  <MS><S N="Name">Internet</S><S N="AddressSpaces">SMTP:*;1</S><B N="IgnoreSTARTTLS">true</B></MS></Obj>
<Obj RefId="3"><TN RefId="3"><T>Selected.System.Management.Automation.PSCustomObject</T>
  <T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>
  <MS><S N="Name">Default EX2</S><S N="Server">EX2</S><S N="AuthMechanism">31</S>
  <S N="Bindings">0.0.0.0:2525 [::]:2525</S></MS></Obj>
<Obj RefId="4"><TNRef RefId="2" /><MS><S N="Colour">blue</S></MS></Obj>"""


def test_selected_form_by_type_name_and_by_property_set(tmp_path: Path) -> None:
    by_type, send, by_shape, unknown = converted(write(tmp_path, SELECTED))
    assert isinstance(by_type, ReceiveConnector)
    assert by_type.source.form == "selected"
    assert by_type.identity == "EX1\\Default Frontend EX1"
    assert by_type.name == "Default Frontend EX1"
    assert by_type.auth_mechanism == A.TLS | A.INTEGRATED
    assert by_type.bindings == (Binding("0.0.0.0", 25, "0.0.0.0:25"),)
    assert by_type.server == "EX1"  # from the identity, since Server was not selected
    assert by_type.permission_groups is UNKNOWN
    assert by_type.require_tls is UNKNOWN
    assert by_type.tls_certificate_name is UNKNOWN

    assert isinstance(send, SendConnector)
    assert send.source.form == "selected"
    assert send.identity == "Internet"
    assert send.ignore_starttls is True
    assert send.address_spaces == (AddressSpace("SMTP", "*", 1, "SMTP:*;1"),)
    assert send.require_tls is UNKNOWN

    assert isinstance(by_shape, ReceiveConnector)
    assert by_shape.identity == "EX2\\Default EX2"  # SERVER\Name, as Exchange prints it
    assert by_shape.auth_mechanism == DEFAULT_AUTH
    assert by_shape.bindings is not UNKNOWN
    assert [b.port for b in by_shape.bindings] == [2525, 2525]

    assert isinstance(unknown, Skipped)
    assert unknown.type_name == "System.Management.Automation.PSCustomObject"


# --- the other kinds -------------------------------------------------------------------------------

OTHER_KINDS = f"""
<Obj RefId="0"><TN RefId="0"><T>Deserialized.{SYSCONFIG}.AcceptedDomain</T></TN><ToString>Contoso</ToString>
  <Props><S N="DomainName">Contoso.COM</S><S N="DomainType">Authoritative</S><B N="Default">true</B>
  <S N="Identity">Contoso</S></Props></Obj>
<Obj RefId="1"><TN RefId="1"><T>Deserialized.{SYSCONFIG}.TransportConfigContainer</T></TN>
  <ToString>Transport Settings</ToString><Props>
  <Obj N="TLSReceiveDomainSecureList" RefId="2"><TN RefId="2">
    <T>Deserialized.System.Collections.ArrayList</T></TN>
    <LST><S>fabrikam.com</S></LST></Obj><Nil N="TLSSendDomainSecureList" /></Props></Obj>
<Obj RefId="3"><TN RefId="3"><T>Deserialized.{SYSCONFIG}.TenantInboundConnector</T></TN>
  <ToString>From on-prem</ToString>
  <Props><S N="Identity">From on-prem</S><B N="RequireTls">true</B><S N="ConnectorType">OnPremises</S>
  <S N="TlsSenderCertificateName">mail.contoso.com</S><B N="RestrictDomainsToCertificate">false</B>
  <Obj N="SenderIPAddresses" RefId="4"><TNRef RefId="2" /><LST><S>192.0.2.1</S></LST></Obj></Props></Obj>
<Obj RefId="5"><TN RefId="4"><T>Deserialized.{SYSCONFIG}.TenantOutboundConnector</T></TN>
  <ToString>To on-prem</ToString>
  <Props><S N="Identity">To on-prem</S><S N="TlsSettings">DomainValidation</S>
    <S N="TlsDomain">mail.contoso.com</S>
  <B N="UseMXRecord">false</B><S N="SmartHosts">mail.contoso.com</S><B N="CloudServicesMailEnabled">true</B>
    </Props></Obj>
<Obj RefId="6"><TN RefId="5"><T>Deserialized.Microsoft.Exchange.Data.Directory.Management.ExchangeServer</T>
  </TN>
  <ToString>EX1</ToString><Props><S N="Name">EX1</S><S N="Fqdn">ex1.contoso.com</S>
  <S N="AdminDisplayVersion">Version 15.2 (Build 1544.4)</S><S N="ServerRole">Mailbox</S></Props></Obj>
<Obj RefId="7"><TN RefId="6">
  <T>Deserialized.Microsoft.Exchange.Management.SystemConfigurationTasks.ExchangeCertificate</T>
  </TN><ToString>x</ToString><Props><S N="Thumbprint">ab12cd</S><S N="Services">IMAP, POP, IIS, SMTP</S>
  <DT N="NotAfter">2030-01-01T01:00:00+01:00</DT><S N="Subject">CN=mail.contoso.com</S><S N="Status">Valid</S>
  <Obj N="CertificateDomains" RefId="8"><TNRef RefId="2" /><LST><S>mail.contoso.com</S>
    <S>autodiscover.contoso.com</S></LST></Obj>
  <S N="Identity">EX1\\AB12CD</S></Props></Obj>
<I32>7</I32>"""


def test_other_kinds(tmp_path: Path) -> None:
    domain, transport, inbound, outbound, server, certificate, bare = converted(write(tmp_path, OTHER_KINDS))
    assert isinstance(domain, AcceptedDomain)
    assert (domain.domain_name, domain.domain_type, domain.default) == (
        "contoso.com",
        AcceptedDomainType.AUTHORITATIVE,
        True,
    )
    assert isinstance(transport, TransportConfig)
    assert transport.tls_receive_domain_secure_list == ("fabrikam.com",)
    assert transport.tls_send_domain_secure_list == ()
    assert isinstance(inbound, InboundConnector)
    assert (inbound.require_tls, inbound.connector_type, inbound.tls_sender_certificate_name) == (
        True,
        "OnPremises",
        "mail.contoso.com",
    )
    assert inbound.sender_ip_addresses == ("192.0.2.1",)
    assert inbound.restrict_domains_to_ip_addresses is UNKNOWN
    assert isinstance(outbound, OutboundConnector)
    assert outbound.tls_settings is TlsAuthLevel.DOMAIN_VALIDATION
    assert (outbound.use_mx_record, outbound.smart_hosts, outbound.cloud_services_mail_enabled) == (
        False,
        ("mail.contoso.com",),
        True,
    )
    assert isinstance(server, ExchangeServer)
    assert (server.fqdn, server.server_role) == ("ex1.contoso.com", "Mailbox")
    assert isinstance(certificate, ExchangeCertificate)
    assert certificate.thumbprint == "AB12CD"
    assert certificate.services == frozenset({"IMAP", "POP", "IIS", "SMTP"})
    assert certificate.not_after == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert certificate.server == "EX1"
    assert certificate.certificate_domains == ("mail.contoso.com", "autodiscover.contoso.com")
    assert certificate.not_before is UNKNOWN
    assert isinstance(bare, Skipped) and bare.reason == "a bare value, not an object"


# --- values that cannot be read ------------------------------------------------------------------

BROKEN = f"""
<Obj RefId="0"><TN RefId="0"><T>{SYSCONFIG}.ReceiveConnector</T></TN><ToString>EX1\\Odd</ToString>
  <Props><S N="AuthMechanism">Tls, Telepathy</S><S N="Bindings">0.0.0.0:25, here:twenty-five</S>
  <S N="RemoteIPRanges">10.0.0.0/8, 10.0.0.300</S><B N="RequireTLS">false</B><Nil N="Enabled" /></Props></Obj>
<Obj RefId="1"><TN RefId="1"><T>{SYSCONFIG}.SmtpSendConnectorConfig</T></TN>
  <Props><B N="RequireTLS">true</B></Props></Obj>
<Obj RefId="2"><TN RefId="2">
  <T>Microsoft.Exchange.Management.SystemConfigurationTasks.ExchangeCertificate</T></TN>
  <ToString>c</ToString><Props><BA N="RawData">bm90IGEgY2VydGlmaWNhdGU=</BA></Props></Obj>"""


def test_unreadable_values_become_unknown_with_a_note(tmp_path: Path) -> None:
    results = converted(write(tmp_path, BROKEN))
    connector = results[0]
    assert isinstance(connector, ReceiveConnector)
    assert connector.auth_mechanism is UNKNOWN
    assert connector.bindings is UNKNOWN
    assert connector.remote_ip_ranges is UNKNOWN
    assert connector.enabled is UNKNOWN
    assert connector.require_tls is False  # the rest of the connector is still read
    notes = [r for r in results if isinstance(r, Skipped) and r.identity == "EX1\\Odd"]
    reasons = " | ".join(n.reason for n in notes)
    assert len(notes) == 4
    assert "property AuthMechanism = 'Tls, Telepathy' cannot be read" in reasons
    assert "'Telepathy'" in reasons and "here:twenty-five" in reasons and "10.0.0.300" in reasons
    assert "property Enabled" in reasons and "$null" in reasons
    no_identity, certificate = (r for r in results[len(notes) + 1 :])
    assert isinstance(no_identity, Skipped) and "no Identity or Name" in no_identity.reason
    assert isinstance(certificate, Skipped) and "no Thumbprint and no readable RawData" in certificate.reason


def test_convert_takes_a_form_override() -> None:
    value = PSObject(type_names=(f"{SYSCONFIG}.SmtpSendConnectorConfig",), props={"Identity": "Live"})
    (connector,) = convert(value, path="psrp://ex1", index=3, form="psrp")
    assert isinstance(connector, SendConnector)
    assert (connector.source.path, connector.source.index, connector.source.form) == ("psrp://ex1", 3, "psrp")


# --- parsers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "issuer", "subject", "common_name", "status"),
    [
        ("<I>CN=CA<S>CN=mail.contoso.com", "CN=CA", "CN=mail.contoso.com", "mail.contoso.com", "ok"),
        (
            "<S>CN=mail.contoso.com, O=Contoso",
            None,
            "CN=mail.contoso.com, O=Contoso",
            "mail.contoso.com",
            "ok",
        ),
        ("CN=bare.contoso.com", None, "CN=bare.contoso.com", "bare.contoso.com", "ok"),
        ("<I>CN=CA<S>O=Contoso, C=US", "CN=CA", "O=Contoso, C=US", None, "no-common-name"),
        ("<I>CN=CA", None, None, None, "malformed"),
        ("<I>CN=CA<S>", "CN=CA", None, None, "malformed"),
    ],
)
def test_parse_certificate_name(
    raw: str, issuer: str | None, subject: str | None, common_name: str | None, status: str
) -> None:
    name = parse_certificate_name(raw)
    assert (name.raw, name.issuer, name.subject, name.common_name, name.status.value) == (
        raw,
        issuer,
        subject,
        common_name,
        status,
    )


def test_parse_address_space() -> None:
    assert parse_address_space("SMTP:*;1") == AddressSpace("SMTP", "*", 1, "SMTP:*;1")
    assert parse_address_space("smtp:*.contoso.com;10").domain == "contoso.com"
    assert parse_address_space("smtp:contoso.com") == AddressSpace(
        "smtp", "contoso.com", None, "smtp:contoso.com"
    )
    for bad in ("contoso.com", "SMTP:", ":*;1", "SMTP:;1"):
        with pytest.raises(ValueError, match="address"):
            parse_address_space(bad)


def test_parse_binding() -> None:
    assert parse_binding("[::]:25") == Binding("::", 25, "[::]:25")
    assert parse_binding("192.0.2.5:587") == Binding("192.0.2.5", 587, "192.0.2.5:587")
    for bad in ("0.0.0.0", "0.0.0.0:port", "mail:25", "0.0.0.0:70000"):
        with pytest.raises(ValueError):
            parse_binding(bad)


def test_parse_ip_range() -> None:
    everything = parse_ip_range("0.0.0.0-255.255.255.255")
    assert everything.is_everything
    assert parse_ip_range("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").is_everything
    masked = parse_ip_range("192.168.1.0(255.255.255.0)")
    assert (masked.lower, masked.upper) == (
        ipaddress.ip_address("192.168.1.0"),
        ipaddress.ip_address("192.168.1.255"),
    )
    single = parse_ip_range("2001:db8::5")
    assert single.lower == single.upper == ipaddress.ip_address("2001:db8::5")
    for bad in ("10.0.0.9-10.0.0.1", "10.0.0.1-::1", "10.0.0.0/33", "nowhere"):
        with pytest.raises(ValueError):
            parse_ip_range(bad)


# --- load() ----------------------------------------------------------------------------------------


def test_load_folder_kinds_duplicates_and_sources(tmp_path: Path) -> None:
    export = tmp_path / "snapshot"
    (export / "nested").mkdir(parents=True)
    write(export, DESERIALIZED, "connectors.xml")
    write(export / "nested", OTHER_KINDS, "other.CLIXML")
    write(export / "nested", DESERIALIZED.split('<Obj RefId="3">')[0], "again.xml")
    (export / "manifest.json").write_text("{}", encoding="utf-8")
    (export / "notes.txt").write_text("Name : value\nOther : value\n", encoding="utf-8")
    organization = load([export, export / "connectors.xml"])
    assert organization.sources == (
        str(export / "connectors.xml"),
        str(export / "nested" / "again.xml"),
        str(export / "nested" / "other.CLIXML"),
    )
    assert len(organization.receive_connectors) == 1 and len(organization.send_connectors) == 1
    assert organization.receive_connectors[0].source.path == str(export / "connectors.xml")
    (duplicate,) = [s for s in organization.skipped if s.reason.startswith("duplicate")]
    assert duplicate.identity == "EX1\\Partner Relay"
    assert duplicate.source.path == str(export / "nested" / "again.xml")
    assert len(organization.objects()) == 8


def test_load_refuses_a_folder_without_exports(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="no export files"):
        load([tmp_path])
    with pytest.raises(InputError, match="no such file or folder"):
        load([tmp_path / "missing.xml"])


def test_certificate_server_comes_from_identity_not_session() -> None:
    """Inside EMS every certificate file carries the session's PSComputerName (ex01 here, even for
    EX02's certificates); Identity `EX02\\<thumbprint>` names the server it is installed on, and the
    same certificate on two servers is two objects."""
    from exconn.model import identity_of
    from exconn.sources.files import load

    org = load([Path(__file__).parents[1] / "samples" / "fabrikam"])
    ids = {identity_of(c) for c in org.certificates}
    thumb = "60B8BDC290617F6DF09558BB2FBE75769C8581F8"
    assert {f"EX01\\{thumb}", f"EX02\\{thumb}"} <= ids
    assert {c.server for c in org.certificates} == {"EX01", "EX02"}
    assert not [s for s in org.skipped if "duplicate" in s.reason]


# --- hostile values (issue 9 §4): read as unknown with a note, never an internal error --------

SEND_TN = f'<TN RefId="0"><T>{SYSCONFIG}.SmtpSendConnectorConfig</T></TN>'


def test_a_ref_to_the_object_itself_is_an_unreadable_property(tmp_path: Path) -> None:
    body = (
        f'<Obj RefId="0">{SEND_TN}<Ref RefId="0" /><Props><S N="Identity">Out</S>'
        '<Ref N="Fqdn" RefId="0" /><Ref N="SmartHosts" RefId="0" /></Props></Obj>'
    )
    org = load([write(tmp_path, body)])
    (connector,) = org.send_connectors
    assert connector.fqdn is UNKNOWN and connector.smart_hosts is UNKNOWN
    reasons = [s.reason for s in org.skipped]
    assert any("Fqdn" in r and "Ref loop or chain" in r for r in reasons)


def test_a_chain_of_thousands_of_refs_is_an_unreadable_property(tmp_path: Path) -> None:
    n = 3000
    chain = '<Obj RefId="1"><S>base</S></Obj>' + "".join(
        f'<Obj RefId="{i}"><Ref RefId="{i - 1}" /></Obj>' for i in range(2, n)
    )
    body = chain + (
        f'<Obj RefId="{n}">{SEND_TN}<Props><S N="Identity">Out</S><Ref N="Fqdn" RefId="{n - 1}" /></Props></Obj>'
    )
    org = load([write(tmp_path, body)])
    (connector,) = org.send_connectors
    assert connector.fqdn is UNKNOWN
    assert any("Fqdn" in s.reason and "Ref loop or chain" in s.reason for s in org.skipped)


def test_a_datetime_that_overflows_in_utc_is_an_unreadable_property(tmp_path: Path) -> None:
    body = (
        '<Obj RefId="0"><TN RefId="0"><T>Microsoft.Exchange.Management.SystemConfigurationTasks.'
        'ExchangeCertificate</T></TN><Props><S N="Thumbprint">AB12</S>'
        '<DT N="NotBefore">0001-01-01T00:00:00+14:00</DT><DT N="NotAfter">9999-12-31T23:59:59-14:00</DT>'
        "</Props></Obj>"
    )
    org = load([write(tmp_path, body)])
    (cert,) = org.certificates
    assert cert.not_before is UNKNOWN and cert.not_after is UNKNOWN
    assert sum("outside the calendar" in s.reason for s in org.skipped) == 2


def test_a_control_character_in_a_name_reaches_the_model(tmp_path: Path) -> None:
    body = (
        f'<Obj RefId="0">{SEND_TN}<Props><S N="Identity">Out_x0007_bound</S>'
        '<S N="Name">Out_x0007_bound_x000A_2</S></Props></Obj>'
    )
    (connector,) = load([write(tmp_path, body)]).send_connectors
    assert connector.identity == "Out\abound" and connector.name == "Out\abound\n2"


def test_library_warnings_become_notes_not_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # cryptography warns when it parses a serial number that is not positive (RFC 5280 §4.1.2.2).
    import base64
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.contoso.com")])
    der = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234567890)
        .not_valid_before(dt.datetime(2024, 1, 1))
        .not_valid_after(dt.datetime(2034, 1, 1))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    negative = der.replace(bytes.fromhex("02051234567890"), bytes.fromhex("02059234567890"), 1)
    assert negative != der
    body = (
        '<Obj RefId="0"><TN RefId="0"><T>Microsoft.Exchange.Management.SystemConfigurationTasks.'
        f'ExchangeCertificate</T></TN><Props><BA N="RawData">{base64.b64encode(negative).decode()}</BA>'
        "</Props></Obj>"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a user's interpreter shows them
        org = load([write(tmp_path, body)])
    (cert,) = org.certificates
    assert cert.not_after == dt.datetime(2034, 1, 1, tzinfo=dt.UTC)
    assert any("serial number" in s.reason for s in org.skipped)
    assert capfd.readouterr().err == ""
