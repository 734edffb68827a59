"""Reading PowerShell CLIXML (Export-Clixml) into generic PowerShell objects."""
