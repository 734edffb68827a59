"""The evidence readers on real logs and reports (../shared/fixtures/real/evidence) and on hostile input."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from exconn.evidence import inputs
from exconn.evidence.reduce import kind_of, reduce_file, reduce_paths
from exconn.evidence.smtplog import split_names

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "real" / "evidence"
RECV = REAL / "E2016-CU22_SmtpReceive_DefaultFrontend_RECV2023011116-1.LOG"
SEND = REAL / "E2013-2016_SmtpSend_OutboundToOffice365_KB4051498_excerpt.LOG"
MS_TLSA = REAL / "tlsrpt_microsoft_sts_and_tlsa-json-string_2025.json"
MS_NOIP = REAL / "tlsrpt_microsoft_no-sending-mta-ip_2025.json"
GOOGLE_EML = REAL / "tlsrpt_google_no-policy-found_2024.eml"
GOOGLE_STS_EML = REAL / "tlsrpt_google_sts_2022.eml"
TRACK13 = REAL / "E2013-CU9_MessageTracking_multi-recipient.LOG"

HEADER = (
    "#Software: Microsoft Exchange Server\r\n#Version: 15.02.1544.004\r\n#Log-type: SMTP {kind} Protocol Log\r\n"
    "#Date: 2025-05-26T00:00:00.000Z\r\n"
    "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context\r\n"
)


def protocol_log(kind: str, lines: list[str]) -> str:
    return HEADER.format(kind=kind) + "".join(line + "\r\n" for line in lines)


def session(
    conn: str,
    sid: str,
    local: str,
    remote: str,
    events: list[tuple[str, str, str]],
    t: str = "2025-05-26T10:00:0",
) -> list[str]:
    out = []
    for n, (ev, data, ctx) in enumerate(events):
        d = f'"{data}"' if "," in data else data
        c = f'"{ctx}"' if "," in ctx else ctx
        out.append(f"{t}{n % 10}.000Z,{conn},{sid},{n},{local},{remote},{ev},{d},{c}")
    return out


def inbound_tls(sid: str, ip: str, conn: str = "EX02\\Default Frontend EX02") -> list[str]:
    return session(conn, sid, "10.0.0.2:25", f"{ip}:4000", [
        ("+", "", ""),
        ("<", "EHLO mail.partner.test", ""),
        (">", "250  ex02.corp.fabrikam.com Hello [1.2.3.4] SIZE 37748736 PIPELINING STARTTLS X-ANONYMOUSTLS", ""),
        ("<", "STARTTLS", ""),
        (">", "220 2.0.0 SMTP server ready", ""),
        ("*", " CN=mail.fabrikam.com CN=Sectigo RSA Domain Validation Secure Server CA, O=Sectigo Limited, L=Salford, S=Greater Manchester, C=GB 00AB 013CA76A3C220B737E7BCD910E41BE8E09909A0A 2023-11-30T00:00:00.000Z 2024-11-30T23:59:59.000Z mail.fabrikam.com", "Sending certificate Subject Issuer name Serial number Thumbprint Not before Not after Subject alternate names"),
        ("*", "", "TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 with strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with strength 384 bits"),
        ("<", "MAIL FROM:<a@partner.test>", ""),
        ("-", "", "Local"),
    ])  # fmt: skip


# --- protocol logs --------------------------------------------------------------------------------


def test_real_receive_log_one_line_certificate_layout():
    ev = reduce_file(str(RECV))
    (t,) = ev.traffic
    assert (t.direction, t.server, t.connector) == (
        "inbound",
        "SERVER-HOSTNAME",
        "SERVER-HOSTNAME\\Default Frontend SERVER-HOSTNAME",
    )
    assert (t.sessions, t.tls, t.plaintext, t.tls_failed, t.starttls_offered) == (1, 1, 0, 0, 1)
    assert dict(t.tls_versions) == {"TLS1.2": 1}
    (c,) = t.certificates
    assert c.thumbprint == "12DEABC6565646512346ABDC1345689413589876"
    assert (c.subject, c.issuer, c.not_after) == (
        "CN=SERVER-HOSTNAME",
        "CN=SERVER-HOSTNAME",
        "2025-01-17T15:15:33.000Z",
    )
    assert (t.first, t.last) == ("2023-01-11T15:59:51.433Z", "2023-01-11T16:00:10.644Z")
    assert t.remote_ip == "95.10.20.33" and t.remote_host == "[95.10.20.33]"


def test_real_send_excerpt_separate_certificate_lines_and_failed_tls():
    ev = reduce_file(str(SEND))  # no header: recognised as a send log by its bare connector name
    (t,) = ev.traffic
    assert (t.direction, t.connector, t.remote_ip) == ("outbound", "Outbound to Office 365", "216.32.181.234")
    assert (t.sessions, t.tls, t.plaintext, t.tls_failed) == (1, 0, 0, 1)
    assert t.certificates[0].subject.startswith("CN=*.domain.com, OU=Enterprise SSL Wildcard")


def test_split_names_distinguished_names_with_spaces_and_commas():
    subject, issuer = split_names("CN=mail.fabrikam.com CN=R11, O=Let's Encrypt, C=US")
    assert (subject, issuer) == ("CN=mail.fabrikam.com", "CN=R11, O=Let's Encrypt, C=US")
    subject, issuer = split_names(
        "CN=Microsoft Exchange Server Auth Certificate CN=Microsoft Exchange Server Auth Certificate"
    )
    assert subject == issuer == "CN=Microsoft Exchange Server Auth Certificate"


def test_receive_state_machine_helo_plaintext_and_expired_certificate(tmp_path):
    helo = session("EX02\\Relay EX02", "08DD0000000000B1", "10.0.0.2:25", "10.20.30.40:5000", [
        ("+", "", ""), ("<", "HELO scanner", ""), (">", "250 ex02.corp.fabrikam.com Hello [10.20.30.40]", ""),
        ("<", "MAIL FROM:<scan@fabrikam.com>", ""), ("-", "", "Remote"),
    ])  # fmt: skip
    log = tmp_path / "anything.txt"
    log.write_text(
        protocol_log("Receive", inbound_tls("08DD0000000000A1", "198.51.100.7") + helo), newline=""
    )
    ev = reduce_file(str(log))
    by_conn = {t.connector: t for t in ev.traffic}
    relay = by_conn["EX02\\Relay EX02"]
    assert (relay.sessions, relay.plaintext, relay.starttls_offered, relay.remote_host) == (
        1,
        1,
        0,
        "scanner",
    )
    front = by_conn["EX02\\Default Frontend EX02"]
    assert front.certificates[0].not_after == "2024-11-30T23:59:59.000Z"
    assert front.certificates[0].issuer.startswith("CN=Sectigo RSA")
    assert front.remote_domain == "partner.test"
    assert dict(ev.local_addresses) == {"10.0.0.2": "EX02"}


def test_send_ignore_starttls_and_rcpt_domain_and_server_from_receive_logs(tmp_path):
    plain = session("Legacy Scanner Relay", "08DD0000000000C1", "10.0.0.2:41000", "192.0.2.25:587", [
        ("*", "", "attempting to connect"), ("+", "", ""),
        ("<", "220 smtp.docuscan.test ESMTP ready", ""), (">", "EHLO mail.fabrikam.com", ""),
        ("<", "250-smtp.docuscan.test Hello", ""), ("<", "250-STARTTLS", ""), ("<", "250 AUTH LOGIN", ""),
        (">", "MAIL FROM:<scan@fabrikam.com>", ""), (">", "RCPT TO:<inbox@docuscan.test>", ""), ("-", "", "Local"),
    ])  # fmt: skip
    (tmp_path / "send.log").write_text(protocol_log("Send", plain), newline="")
    (tmp_path / "recv.log").write_text(
        protocol_log("Receive", inbound_tls("08DD0000000000A1", "198.51.100.7")), newline=""
    )
    ev = reduce_paths([tmp_path], workers=1)
    (out,) = [t for t in ev.resolved_traffic() if t.direction == "outbound"]
    assert (out.server, out.remote_host, out.remote_domain) == ("EX02", "smtp.docuscan.test", "docuscan.test")
    assert (out.plaintext, out.starttls_offered, out.plaintext_offered) == (1, 1, 1)


def test_broken_quoting_drops_that_line_only(tmp_path):
    lines = inbound_tls("08DD0000000000A1", "198.51.100.7")
    lines.insert(
        3,
        '2025-05-26T10:00:03.000Z,EX02\\Default Frontend EX02,08DD0000000000A1,3,10.0.0.2:25,198.51.100.7:4000,<,"EHLO unclosed,',
    )
    lines += inbound_tls("08DD0000000000A2", "198.51.100.8")
    log = tmp_path / "r.log"
    log.write_text(protocol_log("Receive", lines), newline="")
    ev = reduce_file(str(log))
    assert sum(t.tls for t in ev.traffic) == 2
    assert ev.coverage.bad_lines == 1
    assert any("unreadable line" in n for n in ev.notes)


def test_huge_line_is_skipped_in_bounded_memory(tmp_path):
    log = tmp_path / "r.log"
    with open(log, "w", newline="") as f:
        f.write(protocol_log("Receive", inbound_tls("08DD0000000000A1", "198.51.100.7")))
        f.write("x" * (5 * inputs.MAX_LINE) + "\r\n")
        f.write("".join(x + "\r\n" for x in inbound_tls("08DD0000000000A2", "198.51.100.8")))
    ev = reduce_file(str(log))
    assert sum(t.tls for t in ev.traffic) == 2
    assert any("longer than 1 MiB" in n for n in ev.notes)


def test_truncated_gzip_is_one_note_and_the_rest_is_read(tmp_path):
    data = gzip.compress(
        protocol_log("Receive", inbound_tls("08DD0000000000A1", "198.51.100.7") * 50).encode()
    )
    (tmp_path / "a.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "b.log").write_text(
        protocol_log("Receive", inbound_tls("08DD0000000000A2", "198.51.100.8")), newline=""
    )
    ev = reduce_paths([tmp_path], workers=1)
    assert sum(t.sessions for t in ev.traffic) >= 1
    assert [n for n in ev.notes if "a.gz" in n] and len([n for n in ev.notes if "a.gz" in n]) == 1


def test_gzip_bomb_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MIN_CAP", 1 << 20)
    bomb = tmp_path / "bomb"
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        f.write(protocol_log("Receive", []).encode())
        for _ in range(64):
            f.write(b"\n" * (1 << 20))
    ev = reduce_file(str(bomb))
    assert any("compression bomb" in n for n in ev.notes), ev.notes


def test_zip_with_gzip_inside_and_content_not_name(tmp_path):
    z = tmp_path / "logs.dat"
    with zipfile.ZipFile(z, "w") as archive:
        archive.writestr("RECV.LOG", protocol_log("Receive", inbound_tls("08DD0000000000A1", "198.51.100.7")))
        archive.writestr("report.txt", gzip.compress(MS_TLSA.read_bytes()))
        archive.writestr(
            "misnamed.json", protocol_log("Receive", inbound_tls("08DD0000000000A2", "198.51.100.9"))
        )
    ev = reduce_file(str(z))
    assert sum(t.tls for t in ev.traffic) == 2
    assert {r.policy_type for r in ev.tls_reports} == {"sts", "tlsa"}


# --- message tracking -----------------------------------------------------------------------------

FIELDS_2010 = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,"
    "internal-message-id,message-id,recipient-address,recipient-status,total-bytes,recipient-count,"
    "related-recipient-address,reference,message-subject,sender-address,return-path,message-info,directionality,"
    "tenant-id,original-client-ip,original-server-ip,custom-data"
)


def tracking_line(fields: list[str], **values: str) -> str:
    row = [values.get(f.replace("-", "_"), "") for f in fields]
    return ",".join(f'"{v}"' if "," in v else v for v in row)


@pytest.mark.parametrize("field_set", ["2013", "2010"])
def test_tracking_counts_distinct_messages_per_domain(tmp_path, field_set):
    if field_set == "2013":
        header = TRACK13.read_text().splitlines()[:5]
    else:
        header = ["#Software: Microsoft Exchange Server", "#Version: 14.03.0123.000", "#Log-type: Message Tracking Log",
                  "#Date: 2025-05-26T00:00:00.000Z", "#Fields: " + FIELDS_2010]  # fmt: skip
    fields = header[-1][len("#Fields: ") :].split(",")
    rows = [
        tracking_line(fields, date_time="2025-05-26T10:00:00.000Z", connector_id="Internet", source="SMTP", event_id="SEND",
                      message_id="<m1@fabrikam.com>", recipient_address="a@gmail.com;b@gmail.com;c@contoso.com"),
        tracking_line(fields, date_time="2025-05-26T10:05:00.000Z", connector_id="Internet", source="SMTP", event_id="SEND",
                      message_id="<m1@fabrikam.com>", recipient_address="a@gmail.com"),  # a retry
        tracking_line(fields, date_time="2025-05-26T10:06:00.000Z", connector_id="To Contoso", source="SMTP", event_id="SEND",
                      message_id="<m2@fabrikam.com>", recipient_address="x@contoso.com"),
        tracking_line(fields, date_time="2025-05-26T10:07:00.000Z", connector_id="Intra-Organization SMTP Send Connector",
                      source="SMTP", event_id="SEND", message_id="<m3@fabrikam.com>", recipient_address="u@fabrikam.com"),
        tracking_line(fields, date_time="2025-05-26T10:08:00.000Z", source="STOREDRIVER", event_id="DELIVER",
                      message_id="<m4@x>", recipient_address="u@fabrikam.com"),
        tracking_line(fields, date_time="2025-05-26T10:09:00.000Z", connector_id="Internet", source="SMTP", event_id="SEND",
                      message_id="<m5@fabrikam.com>", recipient_address="back@fabrikam.com"),
    ]  # fmt: skip
    log = tmp_path / "t"
    log.write_text("\r\n".join([*header, *rows]) + "\r\n", newline="")
    ev = reduce_file(str(log))
    got = [(r.domain, r.messages, r.connectors) for r in ev.recipient_domains()]
    assert got == [("contoso.com", 2, ("Internet", "To Contoso")), ("gmail.com", 1, ("Internet",))]
    assert ev.coverage.tracking_connectors == ("Internet", "To Contoso")
    assert ev.unlogged_connectors() == ["Internet", "To Contoso"]


def test_real_tracking_logs_read_without_complaint():
    for path in REAL.glob("*MessageTracking*"):
        assert kind_of(path.read_bytes()[:65536]) == "tracking"
        ev = reduce_file(str(path))
        assert ev.coverage.bad_lines == 0 and not ev.notes and ev.coverage.files == 1


# --- TLS-RPT --------------------------------------------------------------------------------------


def test_microsoft_tlsa_policy_string_and_summary_only():
    ev = reduce_file(str(MS_TLSA))
    by_type = {r.policy_type: r for r in ev.tls_reports}
    assert (
        by_type["tlsa"].policy_strings[0].startswith("3 1 1 6007EEE5")
        and len(by_type["tlsa"].policy_strings) == 2
    )
    assert by_type["sts"].successful == 2 and by_type["sts"].failures == ()


def test_microsoft_failure_without_sending_ip():
    (r,) = reduce_file(str(MS_NOIP)).tls_reports
    (f,) = r.failures
    assert (f.result_type, f.sending_mta_ip, f.receiving_mx_hostname, f.count) == (
        "sts-policy-fetch-error",
        None,
        None,
        3,
    )


def test_microsoft_datetime_without_zone_and_missing_policy_domain(tmp_path):
    doc = json.loads(MS_NOIP.read_text())
    doc["date-range"] = {"start-datetime": "2025-06-14T00:00:00", "end-datetime": "2025-06-15T00:00:00Z"}
    doc["policies"][0]["policy"] = {"policy-type": "no-policy-found"}
    (tmp_path / "r.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    (r,) = reduce_file(str(tmp_path / "r.json.gz")).tls_reports
    assert (r.start, r.end, r.policy_domain, r.policy_type) == (
        "2025-06-14T00:00:00Z",
        "2025-06-15T00:00:00Z",
        None,
        "no-policy-found",
    )


def test_google_mails_and_an_mbox_of_them(tmp_path):
    (r,) = reduce_file(str(GOOGLE_EML)).tls_reports
    assert (r.organization, r.policy_type, r.successful, r.failed) == (
        "Google Inc.",
        "no-policy-found",
        48,
        0,
    )
    mbox = tmp_path / "rua"
    mbox.write_bytes(
        b"From noreply@google.com Thu Sep  5 00:00:00 2024\n" + GOOGLE_EML.read_bytes().replace(b"\r\n", b"\n")
        + b"\nFrom noreply@google.com Sat Sep 17 00:00:00 2022\n" + GOOGLE_STS_EML.read_bytes().replace(b"\r\n", b"\n")
    )  # fmt: skip
    ev = reduce_file(str(mbox))
    assert sorted(r.policy_domain or "" for r in ev.tls_reports) == ["cardinalhealth.ca", "test.xmox.nl"]
    sts = next(r for r in ev.tls_reports if r.policy_type == "sts")
    assert sts.mx_hosts and sts.successful == 3


def test_every_real_report_reads():
    ev = reduce_paths([REAL], workers=1)
    assert len({(r.organization, r.report_id) for r in ev.tls_reports}) == 6
    assert [n for n in ev.notes if "PROVENANCE" not in n] == []


def test_wrong_types_refuse_that_report_only(tmp_path):
    doc = json.loads(MS_TLSA.read_text())
    doc["policies"][0]["summary"]["total-successful-session-count"] = "2"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    (tmp_path / "good.json").write_bytes(MS_NOIP.read_bytes())
    ev = reduce_paths([tmp_path], workers=1)
    assert len(ev.tls_reports) == 1
    (note,) = ev.notes
    assert "bad.json" in note and "total-successful-session-count" in note and "\n" not in note


# --- policy host access logs ----------------------------------------------------------------------


def test_iis_log_fields_change_and_attribution(tmp_path):
    log = tmp_path / "u_ex250526.log"
    log.write_text(
        "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: 2025-05-26 00:00:01\r\n"
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken\r\n"
        "2025-05-26 00:00:01 10.0.0.9 GET /.well-known/mta-sts.txt - 443 - 66.249.93.7 Google-SMTP-STS - 200 0 0 15\r\n"
        "2025-05-26 00:10:01 10.0.0.9 GET /index.htm - 443 - 66.249.93.7 Mozilla/5.0 - 200 0 0 15\r\n"
        "#Fields: date time cs-host cs-method cs-uri-stem c-ip cs(User-Agent) sc-status\r\n"
        "2025-05-26 01:00:01 mta-sts.fabrikam.com GET /.well-known/mta-sts.txt 40.107.22.5 Microsoft+Exchange+Online 200\r\n"
        "2025-05-26 02:00:01 mta-sts.fabrikam.com GET /.well-known/mta-sts.txt 198.51.100.99 curl/8.5.0 404\r\n",
        newline="",
    )  # fmt: skip
    ev = reduce_file(str(log))
    got = {(f.fetcher, f.attributed_by, f.host): dict(f.status) for f in ev.policy_fetches}
    assert got == {
        ("Google", "user-agent", "10.0.0.9"): {"200": 1},
        ("Microsoft", "address", "mta-sts.fabrikam.com"): {"200": 1},
        ("curl", "unknown", "mta-sts.fabrikam.com"): {"404": 1},
    }


def test_combined_log(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(
        '98.137.1.2 - - [26/May/2025:10:00:00 +0200] "GET /.well-known/mta-sts.txt HTTP/1.1" 200 88 "-" "Mozilla/5.0 (compatible)"\n'
        '66.102.8.1 - - [26/May/2025:11:00:00 +0000] "GET /.well-known/mta-sts.txt HTTP/1.1" 200 88 "-" "Google-SMTP-STS"\n'
        '1.2.3.4 - - [26/May/2025:11:00:00 +0000] "GET / HTTP/1.1" 200 88 "-" "curl/8"\n'
    )  # fmt: skip
    ev = reduce_file(str(log))
    got = {(f.fetcher, f.attributed_by): (f.requests, f.first) for f in ev.policy_fetches}
    assert got == {
        ("Yahoo", "address"): (1, "2025-05-26T08:00:00Z"),
        ("Google", "user-agent"): (1, "2025-05-26T11:00:00Z"),
    }


def test_two_broken_lines_whose_quotes_pair_up_are_counted(tmp_path):
    lines = inbound_tls("08DD0000000000A1", "198.51.100.7")
    broken = '2025-05-26T10:00:03.000Z,EX02\\Default Frontend EX02,08DD0000000000A1,3,10.0.0.2:25,198.51.100.7:4000,<,"EHLO x,'
    lines[3:3] = [broken, broken]  # even quotes in the chunk: the fast path, then the count check
    lines += inbound_tls("08DD0000000000A2", "198.51.100.8")
    log = tmp_path / "r.log"
    log.write_text(protocol_log("Receive", lines), newline="")
    ev = reduce_file(str(log))
    assert sum(t.tls for t in ev.traffic) == 2
    assert ev.coverage.bad_lines >= 1 and ev.notes  # the pair is one merged row: counted, and noted


TRACKING_CLIXML = """<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
  <Obj RefId="0">
    <TN RefId="0"><T>Deserialized.Microsoft.Exchange.Management.TransportLogSearchTasks.MessageTrackingEvent</T><T>Deserialized.System.Object</T></TN>
    <ToString>Microsoft.Exchange.Management.TransportLogSearchTasks.MessageTrackingEvent</ToString>
    <Props>
      <DT N="Timestamp">2025-05-30T12:00:00.123+02:00</DT>
      <S N="ConnectorId">Internet</S><S N="Source">SMTP</S><S N="EventId">SEND</S>
      <S N="MessageId">&lt;m1@fabrikam.com&gt;</S>
      <Obj N="Recipients" RefId="1"><TN RefId="1"><T>Deserialized.System.String[]</T><T>Deserialized.System.Array</T></TN>
        <LST><S>a@gmail.com</S><S>b@gmail.com</S><S>c@contoso.com</S></LST></Obj>
    </Props>
  </Obj>
  <Obj RefId="2"><TNRef RefId="0" /><ToString>x</ToString>
    <Props><DT N="Timestamp">2025-05-30T12:01:00+02:00</DT><S N="ConnectorId">Internet</S><S N="Source">SMTP</S>
      <S N="EventId">SEND</S><S N="MessageId">&lt;m1@fabrikam.com&gt;</S><S N="Recipients">a@gmail.com</S></Props></Obj>
</Objs>
"""


def test_tracking_export_clixml_utf16(tmp_path):
    path = tmp_path / "tracking.xml"
    path.write_bytes(b"\xff\xfe" + TRACKING_CLIXML.encode("utf-16-le"))
    ev = reduce_file(str(path))
    assert [(r.domain, r.messages) for r in ev.recipient_domains()] == [("contoso.com", 1), ("gmail.com", 1)]
    assert ev.coverage.tracking_connectors == ("Internet",) and not ev.notes


def test_fifo_in_a_folder_is_one_note_not_a_hang(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "r.log").write_text(
        protocol_log("Receive", inbound_tls("08DD0000000000A1", "198.51.100.7")), newline=""
    )
    ev = reduce_paths([tmp_path], workers=1)
    assert sum(t.tls for t in ev.traffic) == 1
    assert [n for n in ev.notes if "pipe" in n and "not a regular file" in n]


def test_refusals_for_want_of_tls_are_counted(tmp_path):
    refused = session("EX02\\Default Frontend EX02", "08DD0000000000D1", "10.0.0.2:25", "192.0.2.9:5000", [
        ("+", "", ""), ("<", "EHLO plain.test", ""), (">", "250  ex02 Hello STARTTLS", ""),
        ("<", "MAIL FROM:<a@plain.test>", ""), (">", "530 5.7.0 Must issue a STARTTLS command first", ""),
        ("-", "", "Remote"),
    ])  # fmt: skip
    log = tmp_path / "r.log"
    log.write_text(protocol_log("Receive", refused), newline="")
    (t,) = reduce_file(str(log)).traffic
    assert (t.plaintext, t.plaintext_offered, dict(t.refusals)) == (1, 1, {"530 5.7.0": 1})
