"""``funcsim`` command line: Typer commands that parse, call the library and print.

Each command lives in its own module, imported here to register it on :data:`app`.
"""

from __future__ import annotations

import gc
import sys

import click
import typer
from rich.markup import escape

from funcsim.cli import (
    _commands_compress,  # noqa: F401
    _commands_report,  # noqa: F401
    _commands_study,  # noqa: F401
    _commands_train,  # noqa: F401  (registers commands)
)
from funcsim.cli._app import app, console, is_debug
from funcsim.errors import FuncsimError

# Recent Typer (0.29) vendors its own click (``typer._click``); its exceptions do not derive from
# the ``click`` package's; older Typer raises the ``click`` ones. Both are caught.
_USAGE_ERRORS = (click.ClickException, typer.TyperException)
_ABORTS = (click.exceptions.Abort, typer.Abort)


def _usage_line(err: Exception) -> str:
    """A usage error (unknown option, bad value, missing argument) as one line."""
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    message = " ".join(message.split())
    ctx = getattr(err, "ctx", None)
    command = getattr(ctx, "command_path", None) or "funcsim"
    return f"{message} (see `{command} --help`)"


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2 (traceback with ``--debug``)."""
    try:
        result = app(args=argv, prog_name="funcsim", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except _USAGE_ERRORS as err:  # bad usage: one line, like every other user error
        if is_debug():
            raise
        console.print(f"[bold red]error:[/] {escape(_usage_line(err))}", highlight=False)
        return 2
    except _ABORTS:
        console.print("aborted")
        return 130
    except FuncsimError as err:
        if is_debug():
            raise
        console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; finished results are kept")
        return 130
    return result if isinstance(result, int) else 0


def entry() -> None:
    """The ``funcsim`` executable (and ``python -m funcsim``): :func:`main`, then exit.

    At exit CPython's collector traverses every object still alive, about 400,000 once torch
    is imported: 0.5-1 s here, only to free memory the OS takes back anyway. Freezing them
    first skips that traversal; atexit handlers still run, reference counting still closes
    what it closes.
    """
    code = main()
    gc.freeze()
    sys.exit(code)
