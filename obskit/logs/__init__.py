"""obskit.logs."""
