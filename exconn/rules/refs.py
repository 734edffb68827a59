"""Where the rules' references point: one table, so the same page is spelled once."""

# Microsoft Learn cmdlet and feature pages.
SET_SEND = "https://learn.microsoft.com/powershell/module/exchange/set-sendconnector"
NEW_SEND = "https://learn.microsoft.com/powershell/module/exchange/new-sendconnector"
SET_RECEIVE = "https://learn.microsoft.com/powershell/module/exchange/set-receiveconnector"
SET_TRANSPORT = "https://learn.microsoft.com/powershell/module/exchange/set-transportconfig"
GET_CERT = "https://learn.microsoft.com/powershell/module/exchange/get-exchangecertificate"
SET_OUTBOUND = "https://learn.microsoft.com/powershell/module/exchange/set-outboundconnector"
NEW_OUTBOUND = "https://learn.microsoft.com/powershell/module/exchange/new-outboundconnector"
SET_INBOUND = "https://learn.microsoft.com/powershell/module/exchange/set-inboundconnector"
EXO_CONNECTORS = (
    "https://learn.microsoft.com/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/"
    "set-up-connectors-to-route-mail"
)
SEND_CONNECTORS = "https://learn.microsoft.com/exchange/mail-flow/connectors/send-connectors"
RECEIVE_CONNECTORS = "https://learn.microsoft.com/exchange/mail-flow/connectors/receive-connectors"
EXO_MTA_STS = "https://learn.microsoft.com/purview/enhancing-mail-flow-with-mta-sts"
EXO_DANE = "https://learn.microsoft.com/purview/how-smtp-dane-works"

# RFC sections.
RFC3207_4 = "https://www.rfc-editor.org/rfc/rfc3207#section-4"
RFC4954_4 = "https://www.rfc-editor.org/rfc/rfc4954#section-4"
RFC7435_3 = "https://www.rfc-editor.org/rfc/rfc7435#section-3"
RFC7672_2_2 = "https://www.rfc-editor.org/rfc/rfc7672#section-2.2"
RFC8460_3 = "https://www.rfc-editor.org/rfc/rfc8460#section-3"
RFC8461_3_1 = "https://www.rfc-editor.org/rfc/rfc8461#section-3.1"
RFC8461_3_2 = "https://www.rfc-editor.org/rfc/rfc8461#section-3.2"
RFC8461_4_1 = "https://www.rfc-editor.org/rfc/rfc8461#section-4.1"
RFC8461_5 = "https://www.rfc-editor.org/rfc/rfc8461#section-5"
RFC8461_8_3 = "https://www.rfc-editor.org/rfc/rfc8461#section-8.3"
RFC8461_10_2 = "https://www.rfc-editor.org/rfc/rfc8461#section-10.2"
