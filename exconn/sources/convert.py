"""The one converter from generic PowerShell objects to exconn's typed model.

Both sources feed it: the CLIXML reader and the PSRP session. Objects are recognised by their type
names (never by file name), or, for `Select-Object` output that lost them, by their property set.
Every property is read as "string or object", because remoting flattens objects past the
serialization depth to their ToString.

A property the export does not carry is `UNKNOWN`. A property that is there but cannot be read
is also `UNKNOWN`, and the converter adds a `Skipped` entry naming the property and the value, so
rules report "could not judge" for that property while the rest of the object is still judged.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from exconn.clixml.objects import Form, PSObject, PSValue
from exconn.model import (
    UNKNOWN,
    AcceptedDomain,
    AuthMechanism,
    ExchangeCertificate,
    ExchangeServer,
    InboundConnector,
    Maybe,
    ModelObject,
    Organization,
    OutboundConnector,
    PermissionGroups,
    ReceiveConnector,
    SendConnector,
    Skipped,
    Source,
    TransportConfig,
    identity_of,
    kind_of,
)
from exconn.sources.certificates import certificate
from exconn.sources.values import (
    Fields,
    accepted_domain_type,
    boolean,
    byte_size,
    certificate_name,
    domain_capabilities,
    each,
    enum_name,
    flags,
    integer,
    object_identity,
    object_name,
    optional_text,
    parse_address_space,
    parse_binding,
    parse_ip_range,
    show,
    smart_host_auth,
    text_of,
    texts,
    time_span,
    tls_auth_level,
    transport_role,
)

_PS_CUSTOM_OBJECT = "System.Management.Automation.PSCustomObject"

# --- one builder per kind ----------------------------------------------------------------------


def _send_connector(f: Fields) -> SendConnector:
    return SendConnector(
        identity=f.identity,
        name=object_name(f, f.identity),
        source=f.source,
        enabled=f.get("Enabled", boolean),
        address_spaces=f.get("AddressSpaces", each(parse_address_space)),
        dns_routing_enabled=f.get("DNSRoutingEnabled", boolean),
        smart_hosts=f.get("SmartHosts", texts),
        port=f.get("Port", integer),
        fqdn=f.get("Fqdn", optional_text),
        ignore_starttls=f.get("IgnoreSTARTTLS", boolean),
        require_tls=f.get("RequireTLS", boolean),
        tls_auth_level=f.get("TlsAuthLevel", tls_auth_level),
        tls_domain=f.get("TlsDomain", optional_text),
        tls_certificate_name=f.get("TlsCertificateName", certificate_name),
        smart_host_auth_mechanism=f.get("SmartHostAuthMechanism", smart_host_auth),
        authentication_credential_set=f.get("AuthenticationCredential", lambda v: v is not None),
        domain_secure_enabled=f.get("DomainSecureEnabled", boolean),
        cloud_services_mail_enabled=f.get("CloudServicesMailEnabled", boolean),
        is_scoped_connector=f.get("IsScopedConnector", boolean),
        source_transport_servers=f.get("SourceTransportServers", texts),
        comment=f.get("Comment", optional_text),
        frontend_proxy_enabled=f.get("FrontendProxyEnabled", boolean),
        source_ip_address=f.get("SourceIPAddress", optional_text),
        use_external_dns_servers_enabled=f.get("UseExternalDNSServersEnabled", boolean),
        max_message_size=f.get("MaxMessageSize", byte_size),
        protocol_logging_level=f.get("ProtocolLoggingLevel", enum_name),
        connection_inactivity_timeout=f.get("ConnectionInactivityTimeOut", time_span),
    )


def _receive_connector(f: Fields) -> ReceiveConnector:
    server: Maybe[str] = f.get("Server", text_of)
    if server is UNKNOWN and "\\" in f.identity:
        server = f.identity.split("\\", 1)[0]
    return ReceiveConnector(
        identity=f.identity,
        name=object_name(f, f.identity),
        source=f.source,
        server=server,
        enabled=f.get("Enabled", boolean),
        auth_mechanism=f.get("AuthMechanism", flags(AuthMechanism)),
        permission_groups=f.get("PermissionGroups", flags(PermissionGroups)),
        bindings=f.get("Bindings", each(parse_binding)),
        remote_ip_ranges=f.get("RemoteIPRanges", each(parse_ip_range)),
        require_tls=f.get("RequireTLS", boolean),
        domain_secure_enabled=f.get("DomainSecureEnabled", boolean),
        transport_role=f.get("TransportRole", transport_role),
        fqdn=f.get("Fqdn", optional_text),
        tls_certificate_name=f.get("TlsCertificateName", certificate_name),
        tls_domain_capabilities=f.get("TlsDomainCapabilities", domain_capabilities),
        extended_protection_policy=f.get("ExtendedProtectionPolicy", enum_name),
        comment=f.get("Comment", optional_text),
    )


def _accepted_domain(f: Fields) -> AcceptedDomain:
    domain = f.get("DomainName", text_of)
    return AcceptedDomain(
        identity=f.identity,
        domain_name=(domain if domain is not UNKNOWN else f.identity).strip().lower(),
        source=f.source,
        domain_type=f.get("DomainType", accepted_domain_type),
        default=f.get("Default", boolean),
    )


def _transport_config(f: Fields) -> TransportConfig:
    return TransportConfig(
        identity=f.identity,
        source=f.source,
        tls_send_domain_secure_list=f.get("TLSSendDomainSecureList", texts),
        tls_receive_domain_secure_list=f.get("TLSReceiveDomainSecureList", texts),
    )


def _inbound_connector(f: Fields) -> InboundConnector:
    return InboundConnector(
        identity=f.identity,
        name=object_name(f, f.identity),
        source=f.source,
        enabled=f.get("Enabled", boolean),
        connector_type=f.get("ConnectorType", enum_name),
        require_tls=f.get("RequireTls", boolean),
        tls_sender_certificate_name=f.get("TlsSenderCertificateName", optional_text),
        restrict_domains_to_certificate=f.get("RestrictDomainsToCertificate", boolean),
        restrict_domains_to_ip_addresses=f.get("RestrictDomainsToIPAddresses", boolean),
        sender_ip_addresses=f.get("SenderIPAddresses", texts),
        sender_domains=f.get("SenderDomains", texts),
    )


def _outbound_connector(f: Fields) -> OutboundConnector:
    return OutboundConnector(
        identity=f.identity,
        name=object_name(f, f.identity),
        source=f.source,
        enabled=f.get("Enabled", boolean),
        connector_type=f.get("ConnectorType", enum_name),
        use_mx_record=f.get("UseMXRecord", boolean),
        smart_hosts=f.get("SmartHosts", texts),
        recipient_domains=f.get("RecipientDomains", texts),
        tls_settings=f.get("TlsSettings", tls_auth_level),
        tls_domain=f.get("TlsDomain", optional_text),
        mta_sts_mode=f.get("MtaStsMode", optional_text),
        smtp_dane_mode=f.get("SmtpDaneMode", optional_text),
        cloud_services_mail_enabled=f.get("CloudServicesMailEnabled", boolean),
    )


def _exchange_server(f: Fields) -> ExchangeServer:
    return ExchangeServer(
        identity=f.identity,
        name=object_name(f, f.identity),
        source=f.source,
        fqdn=f.get("Fqdn", text_of),
        admin_display_version=f.get("AdminDisplayVersion", text_of),
        server_role=f.get("ServerRole", enum_name),
    )


_Builder = Callable[[Fields], ModelObject | None]

# The class name (last segment of the .NET type name) of each kind exconn reads. Base classes
# (SendConnector, ADObject, ...) are deliberately absent: only the most derived type decides.
_BY_TYPE: dict[str, _Builder] = {
    "SmtpSendConnectorConfig": _send_connector,
    "ReceiveConnector": _receive_connector,
    "AcceptedDomain": _accepted_domain,
    "TransportConfigContainer": _transport_config,
    "TransportConfig": _transport_config,
    "ExchangeCertificate": certificate,
    "TenantInboundConnector": _inbound_connector,
    "TenantOutboundConnector": _outbound_connector,
    "ExchangeServer": _exchange_server,
}

# For PSCustomObjects that lost every telling type name: (all of, any of) property names.
_BY_SHAPE: list[tuple[frozenset[str], frozenset[str], _Builder]] = [
    (frozenset({"authmechanism", "bindings"}), frozenset(), _receive_connector),
    (frozenset({"ignorestarttls"}), frozenset({"addressspaces", "smarthosts"}), _send_connector),
    (frozenset({"domainname", "domaintype"}), frozenset(), _accepted_domain),
    (frozenset(), frozenset({"tlsreceivedomainsecurelist", "tlssenddomainsecurelist"}), _transport_config),
    (
        frozenset({"thumbprint"}),
        frozenset({"services", "notafter", "certificatedomains", "rawdata"}),
        certificate,
    ),
    (
        frozenset(),
        frozenset({"tlssendercertificatename", "restrictdomainstocertificate"}),
        _inbound_connector,
    ),
    (frozenset(), frozenset({"tlssettings", "usemxrecord"}), _outbound_connector),
    (frozenset({"admindisplayversion", "serverrole"}), frozenset(), _exchange_server),
]

_GENERIC_TYPES = frozenset({_PS_CUSTOM_OBJECT, "System.Object"})


def _recognise(obj: PSObject) -> tuple[_Builder | None, str, bool]:
    """The builder for an object, the type name to report, and whether its shape told us."""
    for type_name in obj.type_names:
        builder = _BY_TYPE.get(type_name.rsplit(".", 1)[-1])
        if builder is not None:
            return builder, type_name, False
    if all(name in _GENERIC_TYPES for name in obj.type_names[1:]) and (
        not obj.type_names or _PS_CUSTOM_OBJECT in obj.type_names
    ):
        present = {name.lower() for name in obj.names()}
        for required, any_of, builder in _BY_SHAPE:
            if required <= present and (not any_of or any_of & present):
                return builder, obj.type_name or _PS_CUSTOM_OBJECT, True
    return None, obj.type_name, False


def convert(value: PSValue, *, path: str, index: int, form: str | None = None) -> list[ModelObject | Skipped]:
    """Convert one top-level value to at most one model object plus `Skipped` notes.

    `form` overrides the form the object reports (the PSRP source passes "psrp").
    """
    if not isinstance(value, PSObject):
        source = Source(path, index, form or Form.LIVE.value)
        shown = show(value)
        return [Skipped(source, type(value).__name__, shown, "a bare value, not an object")]
    builder, type_name, by_shape = _recognise(value)
    object_form = Form.SELECTED if by_shape else value.form
    source = Source(path, index, form or object_form.value, value.line)
    fields = Fields(value, source, type_name)
    if builder is None:
        fields.identity = object_identity(fields) or ""
        return [
            Skipped(
                source, type_name, fields.identity, f"not a kind exconn reads ({type_name or 'no type name'})"
            )
        ]
    if builder is not certificate:
        identity = object_identity(fields, server_qualified=builder is _receive_connector)
        if not identity:
            return [Skipped(source, type_name, "", "no Identity or Name: cannot tell which object this is")]
        fields.identity = identity
    converted = builder(fields)
    results: list[ModelObject | Skipped] = [] if converted is None else [converted]
    results.extend(fields.notes)
    return results


def convert_all(values: Iterable[PSValue], *, path: str) -> list[ModelObject | Skipped]:
    """Convert every top-level value of one source, numbering them from 0."""
    return list(iter_convert(values, path=path))


def iter_convert(values: Iterable[PSValue], *, path: str) -> Iterator[ModelObject | Skipped]:
    """`convert_all`, one result at a time: a large export is never held whole."""
    for index, value in enumerate(values):
        yield from convert(value, path=path, index=index)


def assemble(results: Iterable[ModelObject | Skipped], *, sources: Sequence[str]) -> Organization:
    """One Organization from converted results, whichever source they came from.

    The same object (kind and identity, compared case-insensitively as Exchange does; a
    certificate's identity includes its server) read twice, e.g. from two overlapping exports, is
    kept once and the later copy listed as skipped.
    """
    kept: dict[tuple[str, str], ModelObject] = {}
    skipped = _SkippedList()
    read_from: Source | None = None  # the source of the last object read
    for result in results:
        if isinstance(result, Skipped):
            # A note on a property of an object that was read is always listed: the rules
            # report it. Objects passed over as a whole are listed up to a bound.
            skipped.append(result, note=result.source == read_from)
            continue
        kind = kind_of(result)
        first = kept.setdefault((kind, identity_of(result).casefold()), result)
        if first is not result:
            read_from = None  # its notes are passed over with it
            where = f"{first.source.path} (object #{first.source.index})"
            skipped.append(
                Skipped(
                    result.source, kind, identity_of(result), f"duplicate of the {kind} read from {where}"
                ),
                note=False,
            )
        else:
            read_from = result.source
    objects = list(kept.values())
    return Organization(
        send_connectors=tuple(o for o in objects if isinstance(o, SendConnector)),
        receive_connectors=tuple(o for o in objects if isinstance(o, ReceiveConnector)),
        accepted_domains=tuple(o for o in objects if isinstance(o, AcceptedDomain)),
        transport_configs=tuple(o for o in objects if isinstance(o, TransportConfig)),
        certificates=tuple(o for o in objects if isinstance(o, ExchangeCertificate)),
        inbound_connectors=tuple(o for o in objects if isinstance(o, InboundConnector)),
        outbound_connectors=tuple(o for o in objects if isinstance(o, OutboundConnector)),
        servers=tuple(o for o in objects if isinstance(o, ExchangeServer)),
        skipped=skipped.listed(),
        sources=tuple(sources),
    )


# Objects passed over, listed one by one up to this many; the rest are counted. An export of a
# million objects of other kinds must not keep (and print) a million reasons: the first ones show
# what was passed over.
LISTED_SKIPPED = 100


class _SkippedList:
    def __init__(self) -> None:
        self.entries: list[Skipped] = []
        self.more = 0
        self.more_kinds: Counter[str] = Counter()
        self.first_unlisted: Skipped | None = None

    def append(self, entry: Skipped, *, note: bool) -> None:
        if note or len(self.entries) < LISTED_SKIPPED:
            self.entries.append(entry)
            return
        self.more += 1
        self.first_unlisted = self.first_unlisted or entry
        # Bounded too: a hostile export can give every object its own type name.
        if entry.type_name in self.more_kinds or len(self.more_kinds) < 64:
            self.more_kinds[entry.type_name] += 1

    def listed(self) -> tuple[Skipped, ...]:
        if self.first_unlisted is None:
            return tuple(self.entries)
        kinds = ", ".join(
            f"{count} {kind or 'no type name'}" for kind, count in self.more_kinds.most_common(3)
        )
        first = self.first_unlisted
        summary = Skipped(
            first.source,
            self.more_kinds.most_common(1)[0][0],
            "",
            f"and {self.more} more skipped entries not listed (from {first.source.path} object "
            f"#{first.source.index} on; most: {kinds})",
        )
        return (*self.entries, summary)
