"""Checkpoints: every part round-trips exactly, damage is named, and a save killed at any step loses nothing."""

import dataclasses
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minilm.files.checkpoint as checkpoint
from minilm import nn, optim, to_numpy
from minilm.backend import asarray
from minilm.files.checkpoint import Checkpoint, check_config, load_checkpoint, save_checkpoint

FILES = ["config.json", "manifest.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json",
         "train_state.json"]


def version(k):
    """A full set of save_checkpoint arguments whose every part says which version ``k`` it is."""
    rng = np.random.default_rng(k)
    model_state = {
        "wte.weight": rng.standard_normal((7, 5)).astype(np.float32),
        "ln_f.bias": rng.standard_normal(5),  # float64
        "counts": np.arange(4, dtype=np.int64) + k,
    }
    optimizer_state = ({"0.exp_avg": rng.standard_normal((7, 5)).astype(np.float32)},
                       {"optimizer": "AdamW", "state": {"0": {"step": k}}})
    return dict(model_state=model_state, config={"n_embd": 5, "version": k}, tokenizer={"chars": "abc", "version": k},
                optimizer_state=optimizer_state, train_state={"step": k, "best_val_loss": 1.0 / (k + 1)})


def which_version(ckpt, candidates):
    """The one k in ``candidates`` whose every part ``ckpt`` holds exactly; fails on a mix of versions."""
    for k in candidates:
        want = version(k)
        if ckpt.config == want["config"]:
            assert_holds(ckpt, want)
            return k
    raise AssertionError(f"checkpoint config {ckpt.config} is none of versions {candidates}")


def assert_holds(ckpt, want):
    assert ckpt.config == want["config"]
    assert ckpt.tokenizer == want["tokenizer"]
    assert ckpt.train_state == want["train_state"]
    for got, saved in ((ckpt.model_state, want["model_state"]), (ckpt.optimizer_state[0], want["optimizer_state"][0])):
        assert sorted(got) == sorted(saved)
        for name in saved:
            assert got[name].dtype == saved[name].dtype, name
            np.testing.assert_array_equal(got[name], to_numpy(saved[name]), err_msg=name)
    assert ckpt.optimizer_state[1] == want["optimizer_state"][1]


# --- round trips ---------------------------------------------------------------------------------------------

def test_round_trip_of_every_part(tmp_path):
    path = tmp_path / "ckpt"
    assert save_checkpoint(path, **version(3)) == path
    assert sorted(os.listdir(path)) == FILES
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.path == path
    assert_holds(ckpt, version(3))


def test_only_model_and_config_leaves_the_rest_none(tmp_path):
    save_checkpoint(tmp_path / "ckpt", {"w": np.ones((2, 3))}, {"n": 1})
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "manifest.json", "model.safetensors"]
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert (ckpt.tokenizer, ckpt.optimizer_state, ckpt.train_state) == (None, None, None)
    np.testing.assert_array_equal(ckpt.model_state["w"], np.ones((2, 3)))


def test_train_state_keeps_rng_state_infinity_and_numpy_scalars(tmp_path):
    rng = np.random.default_rng(5)
    rng.standard_normal(3)
    train_state = {"step": 12, "rng": rng.bit_generator.state, "best_val_loss": float("inf"),
                   "losses": [np.float32(2.5), np.float64(2.25)], "lrs": np.array([1e-3, 5e-4])}
    save_checkpoint(tmp_path / "ckpt", {"w": np.zeros(1)}, {"n": 1}, train_state=train_state)
    loaded = load_checkpoint(tmp_path / "ckpt").train_state
    assert loaded["best_val_loss"] == float("inf") and loaded["losses"] == [2.5, 2.25] and loaded["lrs"] == [1e-3, 5e-4]
    resumed = np.random.default_rng()
    resumed.bit_generator.state = loaded["rng"]  # PCG64's 128-bit ints survive JSON
    np.testing.assert_array_equal(resumed.standard_normal(4), rng.standard_normal(4))


def test_module_and_optimizer_resume_exactly(tmp_path):
    def train(layer, opt, steps, seed):
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            layer.weight.accumulate(asarray(rng.standard_normal(layer.weight.shape).astype(np.float32)))
            layer.bias.accumulate(asarray(rng.standard_normal(layer.bias.shape).astype(np.float32)))
            opt.step()
            opt.zero_grad()

    layer = nn.Linear(5, 3, rng=np.random.default_rng(0))
    opt = optim.AdamW(layer.parameters(), lr=1e-2)
    train(layer, opt, 2, seed=1)
    save_checkpoint(tmp_path / "ckpt", layer.state_dict(), {"in": 5, "out": 3}, optimizer_state=opt.state_dict())
    ckpt = load_checkpoint(tmp_path / "ckpt")
    fresh = nn.Linear(5, 3, rng=np.random.default_rng(99)).load_state_dict(ckpt.model_state)
    fresh_opt = optim.AdamW(fresh.parameters(), lr=0.5)
    fresh_opt.load_state_dict(*ckpt.optimizer_state)
    train(layer, opt, 1, seed=2)
    train(fresh, fresh_opt, 1, seed=2)
    for (name, ours), (_, theirs) in zip(layer.named_parameters(), fresh.named_parameters()):
        np.testing.assert_array_equal(to_numpy(theirs.data), to_numpy(ours.data), err_msg=name)


def test_tied_weights_are_saved_under_both_names_and_load_into_one_parameter(tmp_path):
    class Tied(nn.Module):
        def __init__(self, seed):
            self.wte = nn.Embedding(7, 5, rng=np.random.default_rng(seed))
            self.lm_head = nn.Linear(5, 7, bias=False, rng=np.random.default_rng(seed))
            self.lm_head.weight = self.wte.weight

    model = Tied(0)
    assert list(model.state_dict()) == ["wte.weight", "lm_head.weight"]
    save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"tied": True})
    state = load_checkpoint(tmp_path / "ckpt").model_state
    np.testing.assert_array_equal(state["lm_head.weight"], state["wte.weight"])
    fresh = Tied(1).load_state_dict(state)
    assert fresh.lm_head.weight is fresh.wte.weight
    np.testing.assert_array_equal(to_numpy(fresh.wte.weight.data), to_numpy(model.wte.weight.data))


_BASE = np.arange(4 * 6 * 5, dtype=np.float64).reshape(4, 6, 5)
VIEWS = {
    "transposed": lambda a: a[0].T,
    "strided slice": lambda a: a[:, ::2, 1:],
    "reversed": lambda a: a[::-1],
    "fortran order": lambda a: np.asfortranarray(a),
    "axes permuted and sliced": lambda a: a.transpose(2, 0, 1)[1:, :, ::3],
    "backend array transposed": lambda a: asarray(a)[1].T,
}


@pytest.mark.parametrize("view", VIEWS, ids=list(VIEWS))
def test_non_contiguous_arrays_round_trip_exactly(tmp_path, view):
    # safetensors 0.8.0 alone writes these in memory order: the values come back scrambled, with no error
    array = VIEWS[view](_BASE)
    save_checkpoint(tmp_path / "ckpt", {"x": array}, {}, optimizer_state=({"m": array}, {}))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    for loaded in (ckpt.model_state["x"], ckpt.optimizer_state[0]["m"]):
        np.testing.assert_array_equal(loaded, to_numpy(array))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"])
def test_dtypes_are_kept(tmp_path, dtype):
    array = (np.arange(-6, 6).reshape(3, 4) * 1.5).astype(dtype)
    save_checkpoint(tmp_path / "ckpt", {"x": array, "scalar": array[1, 2]}, {})
    state = load_checkpoint(tmp_path / "ckpt").model_state
    assert state["x"].dtype == np.dtype(dtype) and state["scalar"].shape == ()
    np.testing.assert_array_equal(state["x"], array)
    np.testing.assert_array_equal(state["scalar"], array[1, 2])


@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4),
       dtype=st.sampled_from(["float32", "float64", "int64"]), seed=st.integers(0, 2**16))
def test_any_shape_and_view_round_trips(tmp_path_factory, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    array = array.transpose(rng.permutation(len(shape)))[tuple(slice(None, None, int(s)) for s in
                                                                 rng.integers(1, 3, len(shape)))]
    path = tmp_path_factory.mktemp("ckpt") / "ckpt"
    save_checkpoint(path, {"x": array}, {})
    loaded = load_checkpoint(path).model_state["x"]
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)],
                         ids=["umask 022", "umask 077"])
def test_file_modes_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "ckpt", **version(0))
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "ckpt").st_mode & 0o777) == oct(dir_mode)
    for name in FILES:
        assert oct(os.stat(tmp_path / "ckpt" / name).st_mode & 0o777) == oct(file_mode), name


# --- damaged or missing checkpoints --------------------------------------------------------------------------

def saved(tmp_path, manifest=True):
    path = tmp_path / "ckpt"
    save_checkpoint(path, **version(0))
    if not manifest:
        os.remove(path / "manifest.json")
    return path


@pytest.mark.parametrize("manifest", [True, False], ids=["with manifest", "without manifest"])
@pytest.mark.parametrize("keep", [0, 5, 8, 60, -1])
def test_truncated_model_is_named(tmp_path, manifest, keep):
    path = saved(tmp_path, manifest)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[:keep])
    with pytest.raises(ValueError, match="checkpoint model.safetensors is truncated or corrupt") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_flipped_bit_in_the_data_is_caught_by_the_manifest(tmp_path):
    path = saved(tmp_path)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 0x10  # inside an array: safetensors alone cannot see this
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"checkpoint model.safetensors is truncated or corrupt \(SHA-256"):
        load_checkpoint(path)


def test_flipped_byte_in_the_header_is_caught_without_a_manifest(tmp_path):
    path = saved(tmp_path, manifest=False)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[9] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checkpoint model.safetensors is truncated or corrupt"):
        load_checkpoint(path)


def test_truncated_optimizer_is_named(tmp_path):
    path = saved(tmp_path)
    (path / "optimizer.safetensors").write_bytes((path / "optimizer.safetensors").read_bytes()[:-1])
    with pytest.raises(ValueError, match="checkpoint optimizer.safetensors is truncated or corrupt"):
        load_checkpoint(path)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"checkpoint folder {tmp_path / 'nowhere'} does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "ckpt").write_text("hello")
    with pytest.raises(NotADirectoryError, match="is a file, not a checkpoint folder"):
        load_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize("manifest", [True, False], ids=["with manifest", "without manifest"])
@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_missing_required_file_is_named(tmp_path, manifest, name):
    path = saved(tmp_path, manifest)
    os.remove(path / name)
    with pytest.raises(FileNotFoundError, match=f"checkpoint {path} has no {name}"):
        load_checkpoint(path)


def test_missing_file_listed_in_the_manifest_is_named(tmp_path):
    path = saved(tmp_path)
    os.remove(path / "optimizer.safetensors")
    with pytest.raises(FileNotFoundError, match="has no optimizer.safetensors"):
        load_checkpoint(path)


def test_invalid_config_json_is_named(tmp_path):
    path = saved(tmp_path, manifest=False)  # as after editing config.json by hand
    (path / "config.json").write_text('{"n_embd": 5,')
    with pytest.raises(ValueError, match="checkpoint config.json is not valid JSON") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="checkpoint config.json must hold a JSON object, got list"):
        load_checkpoint(path)


def test_edited_config_json_is_caught_by_the_manifest(tmp_path):
    path = saved(tmp_path)
    (path / "config.json").write_text((path / "config.json").read_text().replace("5", "6"))
    with pytest.raises(ValueError, match=r"checkpoint config.json is truncated or corrupt \(SHA-256"):
        load_checkpoint(path)


@pytest.mark.parametrize("text, message", [
    ("{not json", "checkpoint manifest.json is not valid JSON"),
    ('{"format": "minilm-checkpoint", "version": 99, "files": {}}', "is not a minilm-checkpoint version 1 manifest"),
    ('{"format": "minilm-checkpoint", "version": 1, "files": [1]}', "is not a minilm-checkpoint version 1 manifest"),
])
def test_bad_manifest_is_named(tmp_path, text, message):
    path = saved(tmp_path)
    (path / "manifest.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path)


# --- bad input to save: a clear error, and nothing saved is touched -------------------------------------------

def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("change, error, message", [
    (dict(config={"f": object()}), TypeError, "config is not JSON-able"),
    (dict(config=[1, 2]), TypeError, "config must be a dict, got list"),
    (dict(train_state={"rng": {1, 2}}), TypeError, "train_state is not JSON-able"),
    (dict(tokenizer="abc"), TypeError, "tokenizer must be a dict, got str"),
    (dict(model_state={"w": np.array(["a", "b"])}), TypeError, r"model_state\['w'\] has dtype <U1"),
    (dict(model_state={"w": np.array([object()])}), TypeError, r"model_state\['w'\] has dtype object"),
    (dict(model_state={3: np.zeros(2)}), TypeError, "array names must be strings, got 3"),
    (dict(model_state=[np.zeros(2)]), TypeError, "model_state must be a dict of name -> array, got list"),
    (dict(optimizer_state={"m": np.zeros(2)}), TypeError, "optimizer_state must be a pair"),
    (dict(optimizer_state=({"m": np.zeros(2)}, {"lr": object()})), TypeError, "optimizer_state meta is not JSON-able"),
])
def test_bad_input_raises_and_keeps_the_old_checkpoint(tmp_path, change, error, message):
    path = saved(tmp_path)
    before = snapshot(path)
    with pytest.raises(error, match=message):
        save_checkpoint(path, **{**version(1), **change})
    assert snapshot(path) == before and os.listdir(tmp_path) == ["ckpt"]


def test_refuses_to_replace_what_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is a folder but not a minilm checkpoint"):
        save_checkpoint(tmp_path / "notes", **version(0))
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        save_checkpoint(tmp_path / "file", **version(0))
    assert (tmp_path / "file").read_text() == "mine"
    with pytest.raises(ValueError, match="checkpoint path must name a folder"):
        save_checkpoint(tmp_path / "..", **version(0))


def test_an_empty_folder_is_replaced_and_missing_parents_made(tmp_path):
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", **version(0))
    save_checkpoint(tmp_path / "runs" / "a" / "ckpt", **version(1))
    assert which_version(load_checkpoint(tmp_path / "empty"), [0]) == 0
    assert which_version(load_checkpoint(tmp_path / "runs" / "a" / "ckpt"), [1]) == 1


def test_a_failed_write_removes_its_temp_folder_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = saved(tmp_path)
    before = snapshot(path)
    real, calls = checkpoint.write_file, []

    def disk_full_on_third_file(file, data):
        calls.append(file)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(file, data)

    monkeypatch.setattr(checkpoint, "write_file", disk_full_on_third_file)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, **version(1))
    assert snapshot(path) == before and os.listdir(tmp_path) == ["ckpt"]


# --- a save killed at any instant ----------------------------------------------------------------------------

class Killed(BaseException):
    """The process dies here: no ``except Exception`` clause and no cleanup runs, as under SIGKILL."""


OS_CALLS = ("mkdir", "open", "fsync", "rename", "unlink", "rmdir")  # every step a save takes on the disk


def save_killed(path, k, at, after):
    """save_checkpoint(version k), killed just before (or just after) its ``at``-th call into OS_CALLS.

    Returns False when the save finished first (``at`` is past its last call). fsync is counted but not
    done: these tests are about the order of renames, and skipping it keeps hundreds of saves fast.
    """
    count = [0]

    def instrument(op, real):
        def call(*args, **kwargs):
            count[0] += 1
            hit = count[0] == at
            if hit and not after:
                raise Killed(op)
            try:
                result = None if op == "fsync" else real(*args, **kwargs)
            except OSError:  # pathlib's mkdir(exist_ok=True) expects FileExistsError: die after it all the same
                if hit:
                    raise Killed(op) from None
                raise
            if hit:
                if op == "open":
                    os.close(result)
                raise Killed(op)
            return result
        return call

    with pytest.MonkeyPatch.context() as patch:
        for op in OS_CALLS:
            patch.setattr(os, op, instrument(op, getattr(os, op)))
        try:
            save_checkpoint(path, **version(k))
        except Killed:
            return True
    return False


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """1..N, the steps of a save that replaces a checkpoint: found by killing it at ever later steps."""
    n = 1
    while True:
        probe = tmp_path_factory.mktemp("probe") / "ckpt"
        save_checkpoint(probe, **version(0))
        if not save_killed(probe, 1, at=n, after=False):
            return range(1, n)
        n += 1


def assert_clean_save_works(path):
    save_checkpoint(path, **version(9))
    assert which_version(load_checkpoint(path), [9]) == 9
    assert os.listdir(path.parent) == [path.name], "a temp folder or .previous was left behind"


@pytest.mark.parametrize("after", [False, True], ids=["before the call", "after the call"])
def test_a_kill_at_any_step_leaves_the_old_or_the_new_checkpoint(tmp_path, points, after):
    assert len(points) >= 20, f"only {len(points)} crash points: is the save still instrumented?"
    outcomes = []
    for at in points:
        path = tmp_path / f"at{at}" / "ckpt"
        save_checkpoint(path, **version(0))
        assert save_killed(path, 1, at, after)
        outcomes.append(which_version(load_checkpoint(path), [0, 1]))
        assert_clean_save_works(path)
    assert outcomes[0] == 0 and outcomes[-1] == 1, outcomes
    assert outcomes == sorted(outcomes), f"old and new alternate across crash points: {outcomes}"


def test_a_kill_during_the_very_first_save_leaves_nothing_or_the_new_checkpoint(tmp_path, points):
    for at in points:
        path = tmp_path / f"at{at}" / "ckpt"
        save_killed(path, 1, at, after=False)  # a first save takes fewer steps: the last points are past its end
        try:
            which_version(load_checkpoint(path), [1])
        except FileNotFoundError as err:
            assert "does not exist" in str(err)
        assert_clean_save_works(path)


def test_two_kills_in_a_row_still_leave_a_whole_checkpoint(tmp_path, points, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # hundreds of saves; the order of renames is what is tested
    for first in points:
        for second in points[::3]:
            path = tmp_path / f"{first}-{second}" / "ckpt"
            save_checkpoint(path, **version(0))
            save_killed(path, 1, first, after=False)
            save_killed(path, 2, second, after=True)
            which_version(load_checkpoint(path), [0, 1, 2])
            assert_clean_save_works(path)


def test_leftovers_of_killed_saves_are_ignored_then_removed(tmp_path):
    path = saved(tmp_path)
    for junk in (".ckpt.tmp-999-dead", "ckpt.previous"):
        (tmp_path / junk).mkdir()
        (tmp_path / junk / "model.safetensors").write_bytes(b"half a file")
    (tmp_path / ".other.tmp-1-x").mkdir()  # another checkpoint's: not ours to remove
    assert which_version(load_checkpoint(path), [0]) == 0
    save_checkpoint(path, **version(1))
    assert sorted(os.listdir(tmp_path)) == [".other.tmp-1-x", "ckpt"]


def test_loads_previous_when_a_save_died_between_the_renames(tmp_path):
    path = saved(tmp_path)
    os.rename(path, tmp_path / "ckpt.previous")
    ckpt = load_checkpoint(path)
    assert ckpt.path == tmp_path / "ckpt.previous" and which_version(ckpt, [0]) == 0


def test_a_save_during_a_load_gives_the_new_checkpoint_not_a_mix(tmp_path, monkeypatch):
    path = saved(tmp_path)
    real, reads = checkpoint._read_member, []

    def save_after_reading_the_model(fd, folder, name, required, manifest):
        reads.append(name)
        if name == "config.json" and reads.count(name) == 1:  # the model was read from version 0 already
            save_checkpoint(path, **version(1))
        return real(fd, folder, name, required, manifest)

    monkeypatch.setattr(checkpoint, "_read_member", save_after_reading_the_model)
    assert which_version(load_checkpoint(path), [0, 1]) == 1
    assert reads.count("model.safetensors") == 2, "the load did not start over"


CHILD = """
import sys
import numpy as np
from minilm.files.checkpoint import save_checkpoint
for k in range(10**6):
    big = np.full(200_000, k, np.float32)
    save_checkpoint(sys.argv[1], {"w": big, "v": np.full((300, 100), k, np.float64)}, {"k": k},
                    optimizer_state=({"m": -big}, {"step": k}), train_state={"step": k})
    print(k, flush=True)
"""


def test_sigkill_during_a_save_loop_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    for delay in (0.0, 0.05, 0.13):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip().isdigit()  # at least one save finished
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        ckpt = load_checkpoint(path)
        k = ckpt.config["k"]
        assert ckpt.train_state == {"step": k} and ckpt.optimizer_state[1] == {"step": k}
        assert np.all(ckpt.model_state["w"] == k) and np.all(ckpt.model_state["v"] == k)
        assert np.all(ckpt.optimizer_state[0]["m"] == -k)
    save_checkpoint(path, {"w": np.zeros(1)}, {"k": -1})
    assert os.listdir(tmp_path) == ["ckpt"]


# --- check_config --------------------------------------------------------------------------------------------

def test_check_config_names_each_mismatch_with_both_values():
    saved_config = {"n_embd": 64, "n_head": 4, "dropout": 0.1, "betas": [0.9, 0.95]}
    wanted = {"n_embd": 128, "n_head": 4, "dropout": 0.0, "betas": (0.9, 0.95), "bias": True}
    with pytest.raises(ValueError) as err:
        check_config(saved_config, wanted)
    message = str(err.value)
    assert message.startswith("config does not match the checkpoint: ")
    assert "n_embd: checkpoint has 64, wanted 128" in message
    assert "dropout: checkpoint has 0.1, wanted 0.0" in message
    assert "bias: checkpoint has no such key, wanted True" in message
    assert "n_head" not in message and "betas" not in message  # a tuple equals the list JSON made of it
    with pytest.raises(ValueError) as err:
        check_config(saved_config, wanted, ignore=("dropout",))
    assert "dropout" not in str(err.value) and "n_embd" in str(err.value)


def test_check_config_accepts_a_matching_dataclass(tmp_path):
    @dataclasses.dataclass
    class Config:
        n_embd: int = 64
        betas: tuple = (0.9, 0.95)

    save_checkpoint(tmp_path / "ckpt", {"w": np.zeros(1)}, Config())
    saved_config = load_checkpoint(tmp_path / "ckpt").config
    assert saved_config == {"n_embd": 64, "betas": [0.9, 0.95]}
    check_config(saved_config, Config())
    with pytest.raises(ValueError, match="n_embd: checkpoint has 64, wanted 32"):
        check_config(saved_config, Config(n_embd=32))
