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
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(path) or ".")
