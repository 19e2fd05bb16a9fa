"""obskit.agent."""
