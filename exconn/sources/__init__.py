"""Where an organisation comes from: Export-Clixml files or a live PSRP session."""
