"""`obskit quota`: container CPU and memory quotas against the workers actually running."""
