"""Checkpoints: a folder of safetensors and JSON that a crash can never leave half-written.

layout:   model.safetensors      name -> array, the model's state_dict. A tied weight is stored under each of
                                 its names (a little space for a file any safetensors reader understands);
                                 load_state_dict copies both back into the one Parameter.
          config.json            the model config;  tokenizer.json (optional) the tokenizer's dict
          optimizer.safetensors  optional: the optimizer's arrays, its meta (type, groups, step counts) as JSON in
                                 the file's safetensors metadata: arrays and their meaning are written, hashed and
                                 read as one unit, and train_state.json keeps no reserved key
          train_state.json       optional: step, RNG state, best val loss, loss history ...
          manifest.json          size and SHA-256 of each file, so a bit flip is caught as well as a truncation.
                                 A folder without one loads unchecked (delete it after editing config.json by hand).
save:     1. serialise everything in memory: bad input fails here, before the disk is touched;
          2. write it into a fresh temp folder ".<name>.tmp-<pid>-<random>" beside <path> (same filesystem, so
             renames are atomic); fsync every file and the folder;
          3. if <path> exists: remove a stale <path>.previous, rename <path> -> <path>.previous, fsync parent;
          4. rename temp -> <path>, fsync parent;   5. remove <path>.previous.
          POSIX cannot rename a folder over a non-empty one, hence the detour. Invariant: <path> only ever names
          a complete checkpoint and .previous is removed only while <path> exists, so a kill at any instant
          leaves <path>, or (between steps 3 and 4) <path>.previous, complete.
load:     reads <path>, or <path>.previous when <path> is missing. Temp folders are never read; the next save
          removes them. One writer per checkpoint path at a time; readers may run while it saves.
traps:    safetensors 0.8.0 writes a non-C-contiguous array (a transposed view) in memory order, silently
          scrambling it: every array is made C-contiguous first. Its save_file creates files 0600; ours are
          created 0644 and the umask applies. JSON keeps Infinity (a best val loss before any eval).
ref:      the safetensors format (huggingface.co/docs/safetensors); rename(2), atomic within a filesystem.
"""

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from minilm.atomic import fsync_dir, write_file
from minilm.backend import to_numpy

MODEL, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
OPTIMIZER, TRAIN_STATE, MANIFEST = "optimizer.safetensors", "train_state.json", "manifest.json"
FORMAT, VERSION = "minilm-checkpoint", 1
OPTIMIZER_META_KEY = "minilm.optimizer_meta"  # the key of the optimizer's meta in the safetensors metadata
_ABSENT = object()


@dataclasses.dataclass
class Checkpoint:
    """What ``load_checkpoint`` read; a field is None where its file is absent. Arrays are NumPy."""

    config: dict
    model_state: dict  # name -> array
    tokenizer: dict | None = None
    optimizer_state: tuple | None = None  # (arrays, meta), as Optimizer.state_dict() returns and loads
    train_state: dict | None = None
    path: Path | None = None  # the folder read: <path>, or <path>.previous after a save killed mid-swap


def save_checkpoint(path, model_state, config, tokenizer=None, optimizer_state=None, train_state=None):
    """Write the checkpoint folder ``path`` atomically (see the module docstring); returns ``path``.

    model_state: name -> array (NumPy or the active backend's); config, tokenizer, train_state: JSON-able
    dicts (a dataclass config is turned into one); optimizer_state: (arrays, meta) from Optimizer.state_dict().
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"checkpoint path must name a folder, got {str(path)!r}")
    files = {MODEL: _safetensors_bytes(model_state, "model_state"), CONFIG: _json_bytes(config, "config")}
    if tokenizer is not None:
        files[TOKENIZER] = _json_bytes(tokenizer, "tokenizer")
    if optimizer_state is not None:
        if not (isinstance(optimizer_state, (tuple, list)) and len(optimizer_state) == 2):
            raise TypeError(f"optimizer_state must be a pair (arrays, meta), got {type(optimizer_state).__name__}")
        meta = _json_bytes(optimizer_state[1], "optimizer_state meta").decode()
        files[OPTIMIZER] = _safetensors_bytes(optimizer_state[0], "optimizer_state arrays", {OPTIMIZER_META_KEY: meta})
    if train_state is not None:
        files[TRAIN_STATE] = _json_bytes(train_state, "train_state")
    sums = {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()}
    files[MANIFEST] = _json_bytes({"format": FORMAT, "version": VERSION, "files": sums}, "manifest")

    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(path.parent):  # leftovers of killed saves: never read, removed here
        if entry.name.startswith(f".{path.name}.tmp-") and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(tmp, 0o777)  # the umask applies: 0755 under 022
    try:
        for name, data in files.items():
            write_file(tmp / name, data)
        fsync_dir(tmp)
        _swap_in(tmp, path)
    except OSError as err:  # disk full, read-only folder ...: named by the checkpoint, not the temp file
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(err.errno, f"{err.strerror or err} while saving this checkpoint; nothing was replaced "
                      f"(any checkpoint already there is intact)", str(path)) from err
    except BaseException:  # a failed save leaves no temp folder; the last good checkpoint stands
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_checkpoint(path):
    """The ``Checkpoint`` in folder ``path`` (or ``<path>.previous`` when a save was killed mid-swap).

    Errors: FileNotFoundError naming the folder or the missing file; ValueError "checkpoint <file> is
    truncated or corrupt" (size, hash or format wrong) or "... is not valid JSON", naming the folder.
    """
    path = Path(path)
    for _ in range(3):  # a concurrent save may replace the folder while it is read: read the new one
        folder = _folder_to_read(path)
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # reads follow this folder even if it is renamed
        except FileNotFoundError:
            continue
        try:
            return _read_folder(fd, folder)
        except FileNotFoundError:
            if _still_at(fd, folder):
                raise
        finally:
            os.close(fd)
    raise FileNotFoundError(f"checkpoint folder {path} kept vanishing while being read (another process saving?)")


def check_config(saved, wanted, ignore=()):
    """ValueError listing every key whose value differs between ``saved`` and ``wanted`` (dicts or dataclasses).

    Values are compared in their JSON form, so a tuple equals the list it was saved as. Keys in ``ignore``
    (say, dropout, which a resumed run may change) are skipped.
    """
    saved, wanted = (json.loads(_json_bytes(config, what)) for config, what in ((saved, "saved"), (wanted, "wanted")))
    show = {key: [repr(c[key]) if key in c else "no such key" for c in (saved, wanted)] for key in {**saved, **wanted}}
    diffs = [f"{key}: checkpoint has {ours}, wanted {theirs}" for key, (ours, theirs) in show.items()
             if key not in ignore and saved.get(key, _ABSENT) != wanted.get(key, _ABSENT)]
    if diffs:
        raise ValueError("config does not match the checkpoint: " + "; ".join(diffs))


def _json_default(value):
    if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "__array__"):  # np.float32(1.5), a GPU 0-d array
        return to_numpy(value).tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_bytes(obj, what):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if not isinstance(obj, Mapping):
        raise TypeError(f"{what} must be a dict, got {type(obj).__name__}")
    try:
        return (json.dumps(obj, indent=1, default=_json_default) + "\n").encode()
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} is not JSON-able: {err}") from err


def _safetensors_bytes(arrays, what, metadata=None):
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{what} must be a dict of name -> array, got {type(arrays).__name__}")
    host = {}
    for name, array in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: array names must be strings, got {name!r}")
        array = to_numpy(array)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"{what}[{name!r}] has dtype {array.dtype}, which safetensors cannot store")
        # safetensors 0.8.0 writes a non-C-contiguous array's memory in memory order: wrong values, no error
        host[name] = array if array.flags.c_contiguous else array.copy(order="C")
    try:
        return safetensors.numpy.save(host, metadata=metadata)
    except safetensors.SafetensorError as err:
        raise TypeError(f"{what} cannot be stored as safetensors: {err}") from err


def _check_replaceable(path):
    """Refuse to replace anything at ``path`` that is not a checkpoint: a save must never eat user files."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path} exists and is not a folder; refusing to replace it with a checkpoint")
    if path.is_dir() and any(path.iterdir()) and not ((path / MODEL).exists() or (path / MANIFEST).exists()):
        raise FileExistsError(f"{path} is a folder but not a minilm checkpoint (no {MODEL}); refusing to replace it")


def _swap_in(tmp, path):
    """Steps 3-5 of the save protocol (module docstring)."""
    previous = path.with_name(path.name + ".previous")
    if path.exists():
        if previous.exists():  # left by a save killed in step 5; <path> is complete, so it is not needed
            shutil.rmtree(previous)
        os.rename(path, previous)
        fsync_dir(path.parent)
    os.rename(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(previous, ignore_errors=True)  # the save has succeeded; a leftover is removed by the next one


def _folder_to_read(path):
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"checkpoint {path} is a file, not a checkpoint folder")
    previous = path.with_name(path.name + ".previous")
    if previous.is_dir():
        return previous
    raise FileNotFoundError(f"checkpoint folder {path} does not exist")


def _still_at(fd, folder):
    """True when ``folder`` is still the folder open as ``fd`` (no save has replaced it meanwhile)."""
    try:
        now, opened = os.stat(folder), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)


def _read_member(fd, folder, name, required, manifest):
    """The bytes of file ``name`` in the folder open as ``fd``, checked against ``manifest``; None if absent."""
    try:
        member = os.open(name, os.O_RDONLY, dir_fd=fd)
    except FileNotFoundError:
        if required or name in manifest:
            raise FileNotFoundError(f"checkpoint {folder} has no {name}") from None
        return None
    with os.fdopen(member, "rb") as f:
        data = f.read()
    expected = manifest.get(name)
    if expected is not None:
        why = (f"{len(data)} bytes, manifest says {expected.get('bytes')}" if len(data) != expected.get("bytes")
               else "SHA-256 differs from the manifest" if hashlib.sha256(data).hexdigest() != expected.get("sha256")
               else None)
        if why:
            raise ValueError(f"checkpoint {name} is truncated or corrupt ({why}) in {folder}")
    return data


def _read_folder(fd, folder):
    manifest = _parse_json(_read_member(fd, folder, MANIFEST, False, {}), MANIFEST, folder)
    files = {} if manifest is None else manifest.get("files")
    known = manifest is None or (manifest.get("format"), manifest.get("version")) == (FORMAT, VERSION)
    if not (known and isinstance(files, dict) and all(isinstance(entry, dict) for entry in files.values())):
        raise ValueError(f"checkpoint {MANIFEST} in {folder} is not a {FORMAT} version {VERSION} manifest")

    def read(name, required=False):
        return _read_member(fd, folder, name, required, files)

    model, _ = _parse_safetensors(read(MODEL, required=True), MODEL, folder)
    optimizer = read(OPTIMIZER)
    if optimizer is not None:
        arrays, metadata = _parse_safetensors(optimizer, OPTIMIZER, folder)
        if OPTIMIZER_META_KEY not in metadata:
            raise ValueError(f"checkpoint {OPTIMIZER} has no {OPTIMIZER_META_KEY} metadata in {folder}")
        optimizer = (arrays, _parse_json(metadata[OPTIMIZER_META_KEY].encode(), OPTIMIZER, folder))
    return Checkpoint(
        config=_parse_json(read(CONFIG, required=True), CONFIG, folder),
        model_state=model,
        tokenizer=_parse_json(read(TOKENIZER), TOKENIZER, folder),
        optimizer_state=optimizer,
        train_state=_parse_json(read(TRAIN_STATE), TRAIN_STATE, folder),
        path=folder,
    )


def _parse_json(data, name, folder):
    if data is None:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint {name} is not valid JSON ({err}) in {folder}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {name} must hold a JSON object, got {type(obj).__name__} in {folder}")
    return obj


def _parse_safetensors(data, name, folder):
    """(name -> NumPy array, the header's string metadata) or ValueError "... is truncated or corrupt"."""
    try:
        arrays = safetensors.numpy.load(data)
    except safetensors.SafetensorError as err:
        raise ValueError(f"checkpoint {name} is truncated or corrupt ({err}) in {folder}") from err
    # the header is an 8-byte little-endian length then JSON; load() has just validated it
    (header_len,) = struct.unpack("<Q", data[:8])
    return arrays, json.loads(data[8:8 + header_len]).get("__metadata__") or {}
