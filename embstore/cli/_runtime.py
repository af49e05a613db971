"""What the command line does around a command: logging, errors, pipes.

- :func:`configure_logging`: ``-v``/``-vv`` set embstore's and Dask's log
  level (Dask's ``distributed`` logs INFO lines by default; the CLI shows them
  only with ``-v``).
- :func:`cli_message`: library errors give Python advice (``pass
  overwrite=True``); on the command line the same advice names the flag
  (``use --overwrite``), or is dropped where no flag exists.
- :func:`silence_stdout`: after a broken pipe (``embstore select ... | head``)
  the rest of the output goes nowhere, quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Iterable

__all__ = ["cli_message", "command_options", "configure_logging", "silence_stdout"]

_DASK_LEVELS = ("warning", "info", "debug")

#: ``pass NAME=VALUE`` advice of library messages (VALUE optional).
_PASS = re.compile(
    r"\bpass (?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;)]*)"
)
#: Python-only pointers: "to Store.open", ", or use Store.open(path, mode='a')", "or paths=".
_PYTHON_ONLY = re.compile(
    r" to [A-Z][A-Za-z]+\.[a-z_]+(?:\(\))?"
    r"|,? or use [A-Z][A-Za-z]+\.[a-z_]+(?:\([^)]*\))?[^.;]*"
    r"| or [a-z_]+=(?:\S*[^\s.;])?"
)
#: Where the advice clause of a sentence starts.
_ADVICE_START = re.compile(r"[;,]?\s*(?:\bIf [^,;]*,\s*|\bor )?\bpass [A-Za-z_]+=")


def configure_logging(verbosity: int) -> None:
    """Set the log level of embstore and of Dask from the number of ``-v``.

    Parameters
    ----------
    verbosity : int
        0: warnings only (default), 1: info, 2 or more: debug.

    Examples
    --------
    >>> configure_logging(0)
    >>> logging.getLogger("distributed").getEffectiveLevel() == logging.WARNING
    True
    """
    v = max(0, min(int(verbosity), 2))
    level = logging.WARNING - 10 * v
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("embstore").setLevel(level)
    dask_level = _DASK_LEVELS[v]
    # worker processes read the environment; this process's dask config and loggers are set directly
    os.environ["DASK_LOGGING__DISTRIBUTED"] = dask_level
    if "dask.config" in sys.modules or "dask" in sys.modules:
        import dask.config

        dask.config.set({"logging.distributed": dask_level})
    for name in (
        "distributed",
        "distributed.scheduler",
        "distributed.nanny",
        "distributed.worker",
        "distributed.core",
        "distributed.http.proxy",
    ):
        logging.getLogger(name).setLevel(level)


def command_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> set[str]:
    """Option strings of the (sub)command that ``args`` was parsed for.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The top-level parser.
    args : argparse.Namespace
        Its parse result.

    Returns
    -------
    set of str
        Every ``--option`` of the innermost subcommand.
    """
    current = parser
    while True:
        sub = next((a for a in current._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            break
        chosen = getattr(args, sub.dest, None)
        if chosen not in sub.choices:
            break
        current = sub.choices[chosen]
    return {s for a in current._actions for s in a.option_strings}


def _flag_advice(name: str, value: str, options: Iterable[str]) -> str | None:
    options = set(options)
    flag = "--" + name.replace("_", "-")
    value = value.strip("'\"")
    if value in ("True", "true"):
        return f"use {flag}" if flag in options else None
    if value in ("False", "false"):
        no_flag = "--no-" + name.replace("_", "-")
        return f"use {no_flag}" if no_flag in options else None
    if flag not in options:
        return None
    if value in ("", "...", "<variable name>") or value.startswith("<"):
        return f"use {flag}"
    return f"use {flag} {value}"


def cli_message(message: str, options: Iterable[str]) -> str:
    """Rewrite a library error message for the command line.

    ``pass NAME=VALUE`` becomes ``use --name VALUE`` when the command has
    that flag; a sentence whose advice has no flag is dropped, so that no
    Python-only advice (``pass weights_only=False``) reaches the shell.

    Parameters
    ----------
    message : str
        The exception's message.
    options : iterable of str
        The command's option strings (:func:`command_options`).

    Returns
    -------
    str
        One line.

    Examples
    --------
    >>> cli_message("x exists; pass overwrite=True to replace it", {"--overwrite"})
    'x exists; use --overwrite to replace it'
    >>> cli_message("cannot read a.pt. If you trust it, pass weights_only=False.", {"--out"})
    'cannot read a.pt.'
    >>> cli_message("no GPU; pass device='cpu'.", {"--device"})
    'no GPU; use --device cpu.'
    """
    options = set(options)
    text = " ".join(str(message).split())  # one line
    if "pass " not in text:
        return text
    kept: list[str] = []
    for part in re.split(r"(?<=[.;])\s+", text):
        if not _PASS.search(part):
            kept.append(part)
            continue
        unresolved = False

        def repl(m: re.Match[str]) -> str:
            nonlocal unresolved
            advice = _flag_advice(m.group("name"), m.group("value"), options)
            if advice is None:
                unresolved = True
                return m.group(0)
            return advice

        new = _PASS.sub(repl, part)
        if unresolved:  # keep what the sentence says before its Python-only advice
            head = part[: _ADVICE_START.search(part).start()].rstrip(" ;,")  # type: ignore[union-attr]
            if head:
                kept.append(head + ("." if not head.endswith((".", ";")) else ""))
            continue
        kept.append(_PYTHON_ONLY.sub("", new))
    out = " ".join(p for p in kept if p).strip()
    out = re.sub(r"(use (--[\w-]+)) \(\2\)", r"\1", out)  # "use --overwrite (--overwrite)"
    return out or text


def silence_stdout() -> None:
    """Point stdout at ``os.devnull`` after a broken pipe, so exiting is quiet.

    Python flushes stdout at exit; with the reader gone (``| head``) that
    flush would raise again and print ``Exception ignored ... BrokenPipeError``.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
