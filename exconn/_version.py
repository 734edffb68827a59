"""The version, in a module of its own: every floor may name it without importing the package facade."""

__version__ = "0.1.0"
