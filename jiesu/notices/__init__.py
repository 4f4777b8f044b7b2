"""notices (issue 15)."""
