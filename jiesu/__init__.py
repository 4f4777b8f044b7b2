"""jiesu (接诉即办): a platform for a city's 12345 citizen service hotline."""

__version__ = "0.1.0"
