"""exconn: is mail between your Exchange servers and the internet really protected by TLS?

The public API is small: load an organisation from exports, evaluate the rules, render the
report, write the fix. Everything else is private to its module.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
