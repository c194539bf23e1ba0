"""Exceptions a user sees as one sentence (the CLI prints them without a traceback, exit status 2)."""


class VisiontrainError(Exception):
    """Base of the errors that are the user's to fix: the message names the file or field and what to do."""


class ConfigError(VisiontrainError, ValueError):
    """A bad configuration value; the message names the field and what is allowed. (A ValueError too, as it was.)"""


class UnknownNameError(VisiontrainError, KeyError):
    """An unknown registry name (dataset, model, preset, export format); the message lists the closest valid names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class DataError(VisiontrainError):
    """A dataset file is missing, corrupt, of the wrong size, or fails its checksum."""


class CheckpointError(VisiontrainError):
    """A checkpoint is missing, unreadable, unsafe (contains Python objects) or from an incompatible version."""


class RunError(VisiontrainError):
    """A run folder is missing, not a run, or would be overwritten."""


class OutputError(VisiontrainError, OSError):
    """A file cannot be written where asked: a folder is in the way, the name is too long, the folder is read-only.
    An OSError too, so code that carries on without an optional file (a cache) still catches it."""


class TrainingStopped(VisiontrainError):
    """Training stopped on purpose (non-finite loss, a signal); the checkpoint named in the message is intact."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
