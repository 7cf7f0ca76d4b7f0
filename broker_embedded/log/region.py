"""A range of a segment file, to be sent to a socket by the kernel (sendfile) instead of read into memory.

A region owns a duplicate of the segment's descriptor: the segment may roll, be cleaned, deleted or closed before
the region is sent, and the duplicate still reads the same file (an unlinked file lives on while a descriptor
holds it), never a file that reused the number.
"""

from __future__ import annotations

import os


class FileRegion:
    """`length` bytes at `offset` of a segment file."""

    __slots__ = ("fd", "offset", "length")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd = os.dup(fd)
        self.offset = offset
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __bool__(self) -> bool:
        return self.length > 0

    def read(self) -> bytes:
        """The bytes themselves (where they cannot be sent from the file)."""
        return os.pread(self.fd, self.length, self.offset)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:  # a region built for an answer that was dropped (a long poll read again)
        self.close()

    def __repr__(self) -> str:
        return f"FileRegion(fd={self.fd}, offset={self.offset}, length={self.length})"
