"""Exceptions segkit raises on purpose. The CLI turns them into one-line messages, never tracebacks."""


class SegkitError(Exception):
    """Base class: an error segkit explains itself. The CLI prints it and exits with ``exit_code``."""

    exit_code = 1


class UsageError(SegkitError):
    """The user asked for something that does not exist or is malformed (exit code 2)."""

    exit_code = 2


class UnknownComponentError(UsageError, KeyError):
    """A model, loss, dataset, callback or recipe name that nobody registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(SegkitError):
    """Two plugins registered the same name for the same kind of component."""


class DataError(SegkitError):
    """A data file or folder is missing, unreadable or inconsistent; the message names the file."""


class CheckpointError(SegkitError):
    """A checkpoint cannot be loaded safely or does not fit what is asked of it."""
