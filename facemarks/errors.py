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


class ConfigError(FacemarksError, ValueError):
    """A configuration value is missing, of the wrong type or out of range.

    The message starts with where the value came from (the file, or "command line") and
    the key, e.g. ``configs/x.yaml: optim.lr: must be a positive number, got -1``.
    """

    def __init__(self, source, key: str, message: str):
        self.source = str(source)
        self.key = key
        super().__init__(f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}")


class UnknownNameError(FacemarksError, LookupError):
    """A name looked up in a registry (model, loss, decoder, ...) does not exist."""

    def __init__(self, kind: str, name, known):
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.known)}")
