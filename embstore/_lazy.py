"""One lazy-attribute loader for package ``__init__`` modules.

A package that re-exports heavy names (or names whose modules import the
package back) binds them on first use instead of at import:

>>> import types
>>> mod = types.ModuleType("demo")
>>> getattr_, dir_ = lazy_attributes("demo", {"sqrt": "math"}, namespace=vars(mod))
>>> getattr_("sqrt")(9.0)
3.0
>>> "sqrt" in dir_()
True
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str,
    names: Mapping[str, str],
    namespace: MutableMapping[str, Any],
    deprecated: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` that import ``names`` on first use.

    Parameters
    ----------
    package : str
        Name of the package, for the error message.
    names : mapping of str to str
        Attribute name -> module that defines it: an absolute name
        (``"embstore.store"``) or one relative to ``package`` (``".mixin"``).
    namespace : mutable mapping
        The package's ``globals()``; a resolved name is cached there, so the
        module ``__getattr__`` runs once per name.
    deprecated : mapping of str to str, optional
        Old name -> the name in ``names`` that replaces it. Using an old name
        returns the new object with a :class:`FutureWarning` naming both.

    Returns
    -------
    (callable, callable)
        Assign them to the package's ``__getattr__`` and ``__dir__``.
    """

    def __getattr__(name: str) -> Any:
        if deprecated and name in deprecated:
            new = deprecated[name]
            warnings.warn(
                f"{package}.{name} is deprecated and will be removed in embstore 0.3; "
                f"use {package}.{new}",
                FutureWarning,
                stacklevel=2,
            )
            return __getattr__(new)
        module_name = names.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
