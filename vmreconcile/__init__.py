"""vmreconcile: declarative management of VMailMgr-style virtual mail domains for qmail.

This module must stay import-free: the stdlib-only runtime (checkvpw, vdeliver, ...)
is a copy of this package's lower layers and imports it on every login and delivery.
"""

__version__ = "0.1.0"
