"""callbacks (issue 15)."""
