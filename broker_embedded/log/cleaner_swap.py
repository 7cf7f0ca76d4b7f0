"""Swapping cleaned segments into a partition's directory so that a crash at any moment loses nothing.

The cleaner writes a group's replacement as `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`) and
fsyncs them. The commit point is one rename: `<base>.log.cleaned` -> `<base>-<end>.swap`, where [base, end) is the
offset range of the source segments it replaces. From then on the swap must be completed, which `complete_swap`
does now and `recover_swaps` does on the next open after a crash:

1. unlink the source segments' files in [base, end) (all but `<base>.log` itself), fsync the directory;
2. rename the cleaned indexes into place, then the swap file onto `<base>.log` (an atomic replace), fsync.

Before the commit rename the old segments are untouched and the `.cleaned` files are garbage; after it, the swap
file holds every record of [base, end) that survives cleaning, so redoing step 1 and 2 is always safe.
"""

from __future__ import annotations

import logging
import os

from .segment import segment_name
from .durable import fsync_directory

log = logging.getLogger(__name__)

CLEANED = ".cleaned"
SWAP = ".swap"
# Per-segment files that belong to a segment's offset range (.txnindex: the aborted-transaction index).
SEGMENT_SUFFIXES = (".log", ".index", ".timeindex", ".txnindex")


def cleaned_paths(directory: str, base: int) -> tuple[str, str, str]:
    """Where the replacement for a group starting at `base` is written: log, offset index, time index."""
    stem = os.path.join(directory, segment_name(base))
    return stem + ".log" + CLEANED, stem + ".index" + CLEANED, stem + ".timeindex" + CLEANED


def swap_path(directory: str, base: int, end: int) -> str:
    return os.path.join(directory, f"{segment_name(base)}-{segment_name(end)}{SWAP}")


def commit_swap(directory: str, base: int, end: int) -> str:
    """The commit point: the cleaned log (already fsynced) becomes the swap file for [base, end)."""
    path = swap_path(directory, base, end)
    os.rename(cleaned_paths(directory, base)[0], path)
    fsync_directory(directory)
    return path


def _segment_files_in(directory: str, base: int, end: int) -> list[tuple[int, str]]:
    found = []
    for name in os.listdir(directory):
        stem, dot, suffix = name.partition(".")
        if dot and stem.isdigit() and len(stem) == 20 and "." + suffix in SEGMENT_SUFFIXES:
            offset = int(stem)
            if base <= offset < end:
                found.append((offset, name))
    return found


def complete_swap(directory: str, base: int, end: int) -> None:
    """Replace the segments in [base, end) by the committed swap file (idempotent: recovery calls it again)."""
    keep = segment_name(base) + ".log"
    for _offset, name in _segment_files_in(directory, base, end):
        if name != keep:
            os.unlink(os.path.join(directory, name))
    fsync_directory(directory)
    _log, index, timeindex = cleaned_paths(directory, base)
    stem = os.path.join(directory, segment_name(base))
    for src, dst in ((index, stem + ".index"), (timeindex, stem + ".timeindex")):
        if os.path.exists(src):
            os.rename(src, dst)
    os.rename(swap_path(directory, base, end), stem + ".log")
    fsync_directory(directory)


def recover_swaps(directory: str) -> None:
    """On open: drop unfinished `.cleaned` files and finish every committed swap (see the module docstring)."""
    if not os.path.isdir(directory):
        return
    names = os.listdir(directory)
    swaps = []
    for name in names:
        if name.endswith(SWAP):
            first, _, last = name[: -len(SWAP)].partition("-")
            if first.isdigit() and last.isdigit():
                swaps.append((int(first), int(last)))
    for base, end in sorted(swaps):
        log.warning("%s: finishing the swap of cleaned segments [%d, %d) interrupted by a crash", directory, base, end)
        # The cleaned indexes may not have been fsynced with the swap: rebuild them from the log instead.
        for path in cleaned_paths(directory, base)[1:]:
            if os.path.exists(path):
                os.unlink(path)
        complete_swap(directory, base, end)
        stem = os.path.join(directory, segment_name(base))
        for suffix in (".index", ".timeindex"):
            if os.path.exists(stem + suffix):
                os.unlink(stem + suffix)
    for name in os.listdir(directory):
        if name.endswith(CLEANED):
            os.unlink(os.path.join(directory, name))
