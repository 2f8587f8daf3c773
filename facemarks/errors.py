"""Errors raised on bad input. Each names the file (and line) at fault."""

from __future__ import annotations


class FacemarksError(Exception):
    """Base class for errors facemarks reports to the user."""


class DataError(FacemarksError, ValueError):
    """A dataset file, annotation or image is unusable.

    The message always starts with the offending path (and ``:line`` when known).
    """

    def __init__(self, path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class CheckpointError(FacemarksError, ValueError):
    """A checkpoint file cannot be used (missing, corrupt, wrong kind)."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")
