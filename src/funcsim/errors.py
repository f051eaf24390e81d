"""Exceptions that carry a one-line message meant for the user.

Everything derived from :class:`FuncsimError` is a problem with the user's input (a config,
a file, an argument): the CLI prints its message on one line and exits with code 2, without a
traceback unless ``--debug`` is given. Any other exception is a bug or an environment failure.
"""

from __future__ import annotations


class FuncsimError(Exception):
    """Base class of user-facing errors (CLI exit code 2)."""


class ConfigError(FuncsimError, ValueError):
    """A setting is invalid: names the field and what is allowed."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup failed; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(FuncsimError):
    """A dataset file is missing or corrupt: names the path and what was expected."""


class StoreError(FuncsimError):
    """A run directory or stored artifact is missing, locked or not what was expected."""


class TrainingDivergedError(FuncsimError):
    """The training loss became NaN or infinite; names the epoch."""
