"""Durable file writes: what "fsynced before acknowledged" means for whole files.

A file is replaced atomically (temporary file, fsync, rename, fsync of the
directory), so a crash leaves either the old contents or the new ones,
never a mix; the directory fsync makes the rename itself durable.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_file_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temporary file, fsync, rename over ``path``, fsync the directory."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


__all__ = ["fsync_directory", "write_all", "write_file_atomically"]
