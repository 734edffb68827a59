"""Observing mail domains on the network: MX, MTA-STS, TLS-RPT, DANE and an SMTP probe."""
