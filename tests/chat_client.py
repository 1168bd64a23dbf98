"""Kept only for tests/test_heartbeat.py, which still imports `Person` from here.

Use `tests/client.py:Client`; delete this module once test_heartbeat.py does.
"""

from .client import PASSWORD, Client, Socket

Person = Client

__all__ = ["PASSWORD", "Person", "Socket"]
