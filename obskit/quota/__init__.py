"""obskit.quota."""
