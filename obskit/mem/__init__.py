"""obskit.mem."""
