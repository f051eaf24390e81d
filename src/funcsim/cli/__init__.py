"""``funcsim`` command line: Typer commands that parse, call the library and print.

Each command lives in its own module, imported here to register it on :data:`app`.
"""

from __future__ import annotations

import click

from funcsim.cli import (
    _commands_compress,  # noqa: F401
    _commands_report,  # noqa: F401
    _commands_study,  # noqa: F401
    _commands_train,  # noqa: F401  (registers commands)
)
from funcsim.cli._app import app, console, is_debug
from funcsim.errors import FuncsimError


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2 (traceback with ``--debug``)."""
    try:
        result = app(args=argv, prog_name="funcsim", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:  # bad usage: click's own one-line message
        err.show()
        return 2
    except click.exceptions.Abort:
        console.print("aborted")
        return 130
    except FuncsimError as err:
        if is_debug():
            raise
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; finished results are kept")
        return 130
    return result if isinstance(result, int) else 0
