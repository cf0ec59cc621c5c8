"""The one place the version lives (the package root re-exports it)."""

__version__ = "0.1.0"
