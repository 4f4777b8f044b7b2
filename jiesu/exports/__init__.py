"""exports (issue 15)."""
