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
