"""obskit.stacks."""
