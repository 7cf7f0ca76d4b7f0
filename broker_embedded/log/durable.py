"""Small files that must survive a crash whole: written to a temporary file, fsynced, renamed over the old one,
and the directory fsynced so that the rename itself is durable."""

from __future__ import annotations

import os


def fsync_directory(directory: str) -> None:
    """Make the directory's entries (created, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, text: str) -> None:
    """Replace `path` with `text`: a reader, or a restart after a crash, sees the old content or the new, never a
    mix."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError:  # a full disk: leave the old file alone and no half-written temporary behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(path) or ".")
