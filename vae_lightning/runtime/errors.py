"""Errors that are the user's to fix (a missing dataset, a bad checkpoint path, a diverged run):
the command line prints their message as one ``error:`` paragraph and exits with ``exit_code``,
without a traceback. Any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from lightning.pytorch.utilities.exceptions import SIGTERMException


class UserError(Exception):
    """A problem with the user's data, files or settings; the message names it and the fix."""

    #: exit status of the command line (2: a usage error, as for a bad option)
    exit_code = 2


class DataNotFoundError(UserError, FileNotFoundError):
    """The dataset's files are not where the datamodule looked, and it may not download them."""


class CorruptDataError(UserError, RuntimeError):
    """A dataset file is present but is not the expected file (wrong size, checksum or format)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint path is missing, is not a checkpoint, or does not fit the model."""


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a NaN or infinite loss (or weights) and was stopped."""

    #: a diverged run is not a usage error: its own status, so scripts can tell it apart
    exit_code = 3


#: Exit status of a run stopped by Ctrl-C or SIGTERM once its checkpoint is written (``ExactResume``):
#: 128 + SIGTERM, the shell's convention, so a script or batch system sees the run did not finish.
STOPPED_EXIT_CODE = 128 + signal.SIGTERM

#: Set to 1 to see the traceback of a user error (a missing dataset, a bad checkpoint path, ...).
TRACEBACK_ENV = "VAE_LIGHTNING_TRACEBACK"


def run_reporting_user_errors(run: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Run a command line's ``run(argv)``; a :class:`UserError` ends it with its message as one
    ``error:`` paragraph on stderr and the error's exit status, without a traceback unless
    ``--traceback`` is among the arguments or ``VAE_LIGHTNING_TRACEBACK=1``. Bugs keep theirs.
    A run stopped by Ctrl-C or SIGTERM (Lightning's ``SIGTERMException``, an exit without a
    status) ends with :data:`STOPPED_EXIT_CODE`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in argv or os.environ.get(TRACEBACK_ENV) == "1"
    try:
        run([arg for arg in argv if arg != "--traceback"])
    except UserError as err:
        if show_traceback:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except SIGTERMException:
        return STOPPED_EXIT_CODE
    return 0
