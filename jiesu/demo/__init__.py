"""The demo city's history: realistic tickets with their whole lifecycle, written in bulk."""
