"""delivery (issue 15)."""
