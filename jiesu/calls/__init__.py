"""calls (issue 15)."""
