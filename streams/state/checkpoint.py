"""`Checkpoint`: the changelog offset a store's local database durably reflects, in a small file beside it.

The file is one line, `<format version> <offset>`. `write` replaces it atomically and durably: write a temporary
file, fsync it, rename it over the old one, fsync the directory (so the rename itself survives an OS crash). A reader
therefore sees the old offset or the new one, never a torn file.

The invariant the runtime relies on holds by ordering: `store.flush()` returns only once the database's writes are
durable (WAL fsynced), so an offset written afterwards never claims more than the database holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StateError

FORMAT_VERSION = 1


class Checkpoint:
    """The checkpoint file at `path`: `read()`, `write(offset)`, `delete()`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r})"

    def read(self) -> int | None:
        """The recorded offset, or None if there is no checkpoint. A damaged file raises StateError."""
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"cannot read checkpoint {str(self.path)!r}: {exc}") from exc
        parts = text.split()
        if len(parts) != 2 or parts[0] != str(FORMAT_VERSION) or not parts[1].isdigit():
            raise StateError(f"checkpoint {str(self.path)!r} is damaged or of an unknown format: {text[:80]!r}; "
                             "delete it to restore the store from its changelog")
        return int(parts[1])

    def write(self, offset: int) -> None:
        """Record `offset` (a changelog offset, >= 0), atomically and durably."""
        if type(offset) is not int or offset < 0:
            raise ValueError(f"checkpoint offset must be an int >= 0, got {offset!r}")
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{FORMAT_VERSION} {offset}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)
        _fsync_directory(directory)

    def delete(self) -> None:
        """Remove the checkpoint (durably): the next start restores the store from the changelog's beginning."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        _fsync_directory(self.path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
