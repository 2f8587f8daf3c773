"""Atomic file writes: a crash or an error never leaves a half-written output, and an
existing file is only replaced by a complete new one.

A write goes to `NAME.<random>.tmp` in the same folder and is renamed over NAME when
complete. Each output file has one writer (rank 0 of a run), so temporary files of NAME left
by a process that was killed mid-write are removed when NAME is next written. A write that
fails (disk full, read-only folder) raises OutputError naming the file and saying that the
previous version, if any, is intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from facemarks.errors import FacemarksError


class OutputError(FacemarksError):
    """An output file or folder cannot be written."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in `path`'s folder; on success it replaces `path` (os.replace)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the data is on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        _unlink(tmp)
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "unexpected pos" in str(exc)
        reason = "no space left on the device" if full else (getattr(exc, "strerror", None) or str(exc))
        kept = "the previous version is intact" if path.exists() else "nothing was written"
        raise OutputError(f"{path}: cannot be written ({reason}); {kept}") from exc
    except BaseException:
        _unlink(tmp)
        raise


def _remove_orphans(path: Path) -> None:
    for orphan in path.parent.glob(f"{path.name}.*.tmp"):
        _unlink(orphan)


def _unlink(path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def check_writable(folder) -> Path:
    """Make sure files can be created in `folder` (or, while it does not exist yet, in the
    nearest folder above it, where it would be created) before any work whose results would
    otherwise be lost; OutputError naming the folder if not. Creates nothing that stays."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "exists and is not a folder" if existing == folder else f"cannot be created: {existing} is a file"
        raise OutputError(f"{folder}: {what}; choose another output folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write output here ({exc.strerror or exc}); choose another folder") from None
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def cache_root() -> Path:
    """Where facemarks keeps what it can rebuild (crop caches, rendered synthetic faces,
    exported ONNX files, converted datasets): $FACEMARKS_CACHE, else ~/.cache/facemarks.
    The one resolver of that folder."""
    return Path(os.environ.get("FACEMARKS_CACHE", Path.home() / ".cache" / "facemarks"))
