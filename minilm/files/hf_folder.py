"""A Hugging Face model folder, whatever the model: reading config.json and the safetensors weights, and
writing an export atomically. hf.py (GPT-2) and hf_bert.py (BERT) hold the name maps; this holds the files.

folder:   config.json (the transformers config's fields) and model.safetensors (name -> array), or a sharded
          model.safetensors.index.json whose weight_map names the shard holding each tensor.
pickles:  pytorch_model.bin (and its sharded index) is a Python pickle: loading one runs whatever code it
          names, so minilm never opens it. A folder holding only that is refused with the one-line conversion.
export:   the files are written into a temp folder beside the target, fsynced, then renamed onto it; with
          --overwrite an earlier export is replaced whole by the checkpoint's swap (a kill mid-swap leaves it at
          <path>.previous). Nothing but an empty folder or an earlier export is ever replaced.
ref:      the safetensors format (huggingface.co/docs/safetensors); transformers' PreTrainedModel.save_pretrained
"""

import json
import os
import secrets
import shutil
from pathlib import Path

import safetensors
import safetensors.numpy

from minilm.atomic import fsync_dir, refuse_to_replace, write_file
from minilm.files.checkpoint import _swap_in  # the checkpoint's replace-a-folder protocol, reused for --overwrite

CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")  # what older save_pretrained calls wrote
CONVERT = ("convert it with transformers: AutoModel.from_pretrained(DIR).save_pretrained(DIR, "
           "safe_serialization=True) writes model.safetensors beside it (the right AutoModel class for its head)")


def read_json(file):
    """The JSON object in ``file``; ValueError naming the file when it is not valid JSON or not an object."""
    try:
        obj = json.loads(Path(file).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err})") from err
    if isinstance(obj, dict):
        return obj
    raise ValueError(f"{file} must hold a JSON object, got {type(obj).__name__}")


def read_safetensors(file):
    """name -> NumPy array of one safetensors file; ValueError naming it when truncated, corrupt or bfloat16."""
    try:
        return safetensors.numpy.load_file(file)
    except safetensors.SafetensorError as err:
        raise ValueError(f"{file} is truncated or corrupt ({err})") from err
    except TypeError as err:  # bfloat16: NumPy has no such dtype
        raise ValueError(f"{file} holds a dtype NumPy cannot read ({err}); save it as float32") from err


def read_config(path):
    """config.json of the Hugging Face model folder ``path`` (its model_type says which reader to use)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileNotFoundError(f"{folder} is a file, not a Hugging Face model folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"Hugging Face model folder {folder} does not exist")
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG}: not a Hugging Face model folder")
    return read_json(folder / CONFIG)


def read_folder(path):
    """(config.json dict, Hugging Face name -> NumPy array) of a local Hugging Face model folder."""
    folder = Path(path)
    config = read_config(folder)
    if (folder / WEIGHTS).is_file():
        return config, read_safetensors(folder / WEIGHTS)
    if (folder / INDEX).is_file():  # sharded: the index maps each name to the shard file holding it
        shards = read_json(folder / INDEX).get("weight_map")
        if not isinstance(shards, dict):
            raise ValueError(f"{folder / INDEX} has no weight_map")
        arrays = {}
        for shard in sorted(set(shards.values())):
            arrays.update(read_safetensors(folder / shard))
        return config, arrays
    pickles = [name for name in PICKLES if (folder / name).is_file()]
    if pickles:
        raise ValueError(f"{folder} has no {WEIGHTS}, only {pickles[0]}, a pickle: minilm never unpickles weights "
                         f"(loading a pickle can run arbitrary code); {CONVERT}")
    raise FileNotFoundError(f"{folder} has no {WEIGHTS} (minilm reads safetensors only, never pickled .bin files)")


def check_export_path(path, overwrite=False, what="Hugging Face model folder"):
    """FileExistsError unless ``path`` may receive an export: absent or an empty folder, or with ``overwrite``
    an earlier export (a folder holding config.json and weights). Anything else, a file or a folder of other
    things, is refused even with ``overwrite``: an export must never eat user files."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"export path must name a folder, got {str(path)!r}")
    refuse_to_replace(path, overwrite, what=what)  # the one --overwrite rule
    if not path.is_symlink() and (not path.exists() or path.is_dir() and not any(path.iterdir())):
        return
    if path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder; refusing to replace it with an export")
    if not ((path / CONFIG).is_file() and ((path / WEIGHTS).is_file() or (path / INDEX).is_file())):
        raise FileExistsError(f"{path} is not a Hugging Face model folder (no {CONFIG} and {WEIGHTS}); "
                              "refusing to replace it with an export")


def write_export(path, files, overwrite=False, what="Hugging Face model folder", extra=None):
    """Write ``files`` (name -> bytes), then ``extra(tmp)`` (a tokenizer writing its own files), as the folder
    ``path``, atomically (module docstring); ``path`` as ``check_export_path`` allows. Returns ``path``."""
    path = Path(path)
    check_export_path(path, overwrite, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(tmp, 0o777)  # the umask applies
    try:
        for name, data in files.items():
            write_file(tmp / name, data)  # 0644 under umask 022, fsynced
        if extra is not None:
            extra(tmp)
        fsync_dir(tmp)
        if overwrite:
            _swap_in(tmp, path)  # path -> path.previous, tmp -> path, remove path.previous
        else:
            os.rename(tmp, path)  # replaces an empty folder; ENOTEMPTY if another process filled it meanwhile
    except BaseException:  # a failed export (disk full, Ctrl-C) leaves no temp folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)
    return path
