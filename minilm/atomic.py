"""Writing files so that a crash at any instant leaves the old file or the new one, never half of either.

The recipe: write the new bytes to a fresh file beside the target (same filesystem), fsync it so the bytes
are on disk before the name points at them, rename it over the target (atomic on POSIX), and fsync the
folder so the rename itself survives a power cut. New files are created 0644 under the umask: a checkpoint
or a tokenizer is meant to be shared (tempfile.mkstemp and safetensors' own writer make them 0600).
"""

import os
import secrets
from pathlib import Path


def write_file(file, data):
    """Create ``file`` (it must not exist), write ``data`` (bytes) and fsync it."""
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # the umask applies: 0644 under 022
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(folder):
    """fsync a folder, so the names created or renamed in it are durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path, data):
    """Atomically make ``path`` hold ``data`` (bytes): temp file beside it, fsync, rename, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def refuse_to_replace(path, overwrite, what="checkpoint"):
    """FileExistsError when ``path`` already holds something and ``overwrite`` is false: the one rule by which
    a command may replace a checkpoint or an export the user named (DESIGN.md: --overwrite, and only it).

    A folder left as ``<path>.previous`` by a save killed mid-swap counts as holding a checkpoint.
    """
    path = Path(path)
    previous = path.with_name(path.name + ".previous")
    taken = path.is_symlink() or path.exists() or previous.is_dir()
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()) and not previous.is_dir():
        taken = False  # an empty folder holds nothing to lose
    if taken and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it with a new {what} "
                              f"(nothing was written)")
