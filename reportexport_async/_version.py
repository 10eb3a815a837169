"""The package's version, in a module that imports nothing (the session's User-Agent uses it)."""

__version__ = "0.1.0"
