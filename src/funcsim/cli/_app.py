"""The Typer application, shared options and the error boundary of the CLI."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="funcsim",
    help=(
        "Does the compressed model still compute the same function as the original? "
        "Train models with functional trajectories, compress them (distillation, "
        "quantization, pruning) and measure how far their predictions move."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class _State:
    debug: bool = False
    quiet: bool = False


state = _State()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    state.debug = debug
    state.quiet = quiet


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on one line to stderr; return the Exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def is_debug() -> bool:
    return state.debug or "--debug" in sys.argv
