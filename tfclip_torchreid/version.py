"""The package version (read by ``setup.py``; written into every checkpoint header)."""

__version__ = "0.1.0"
