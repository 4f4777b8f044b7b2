"""open311 (issue 15)."""
