"""imports (issue 15)."""
