"""Test helpers shipped with embstore (for backends and downstream projects).

:mod:`embstore.testing.store_suite` holds :class:`StoreSuite`, behavioural
tests that every storage backend must pass (subclass it in a pytest module
and say how to make a path).
"""

from __future__ import annotations

__all__: list[str] = []
