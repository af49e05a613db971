"""Helpers shared by the discovery modules.

The variable choice is the analyzer's own (:func:`embstore.analysis.defaults.resolve_variable`),
re-exported here so that every discovery module resolves ``variable=None`` the same way
as the rest of the analyzer and the CLI.
"""

from __future__ import annotations

from ..analysis.defaults import resolve_variable

__all__ = ["resolve_variable"]
