import numpy as np
import pytest

from minilm import nn, to_numpy
from minilm.backend import asarray


class Block(nn.Module):
    def __init__(self, rng):
        self.fc = nn.Linear(3, 4, rng=rng)
        self.proj = nn.Linear(4, 3, bias=False, rng=rng)


class Net(nn.Module):
    """Nested modules, a list of blocks and a weight tied between two places, like a GPT."""

    def __init__(self, rng=0):
        rng = np.random.default_rng(rng)
        self.embed = nn.Linear(3, 3, rng=rng)
        self.h = [Block(rng), Block(rng)]
        self.head = nn.Linear(3, 3, bias=False, rng=rng)
        self.head.weight = self.embed.weight  # tied


def test_named_parameters_use_dotted_torch_names_and_list_tied_weights_once():
    names = [name for name, _ in Net().named_parameters()]
    assert names == ["embed.weight", "embed.bias", "h.0.fc.weight", "h.0.fc.bias", "h.0.proj.weight",
                     "h.1.fc.weight", "h.1.fc.bias", "h.1.proj.weight"]


def test_state_dict_holds_every_name_including_both_ends_of_a_tie():
    state = Net().state_dict()
    assert "head.weight" in state and state["head.weight"] is state["embed.weight"]
    assert len(state) == 9


def test_num_params_counts_a_tied_weight_once():
    assert Net().num_params() == 9 + 3 + 2 * (12 + 4 + 12)


def test_load_state_dict_round_trip():
    src, dst = Net(rng=1), Net(rng=2)
    dst.load_state_dict(src.state_dict())
    for (name, a), (_, b) in zip(src.named_parameters(), dst.named_parameters()):
        np.testing.assert_array_equal(to_numpy(a.data), to_numpy(b.data), err_msg=name)


def test_load_state_dict_copies_rather_than_aliases():
    src, dst = Net(rng=1), Net(rng=2)
    dst.load_state_dict(src.state_dict())
    src.embed.bias.data[0] += 1.0
    assert float(dst.embed.bias.data[0]) != float(src.embed.bias.data[0])


def test_load_state_dict_names_missing_unexpected_and_mis_shaped_keys():
    net = Net()
    state = dict(net.state_dict())
    del state["h.1.fc.bias"]
    state["h.7.fc.bias"] = state["embed.bias"]
    state["embed.weight"] = asarray(np.zeros((3, 5)))
    with pytest.raises(ValueError) as err:
        net.load_state_dict(state)
    message = str(err.value)
    assert "missing keys: h.1.fc.bias" in message
    assert "unexpected keys: h.7.fc.bias" in message
    assert "embed.weight: expected (3, 3), got (3, 5)" in message


def test_load_state_dict_non_strict_allows_missing_but_not_mis_shaped():
    net = Net()
    net.load_state_dict({"embed.bias": np.ones(3)}, strict=False)
    np.testing.assert_array_equal(to_numpy(net.embed.bias.data), np.ones(3))
    with pytest.raises(ValueError, match="embed.bias: expected"):
        net.load_state_dict({"embed.bias": np.ones(4)}, strict=False)


def test_load_state_dict_keeps_the_parameter_dtype():
    net = Net()
    net.load_state_dict({k: to_numpy(v).astype(np.float64) for k, v in net.state_dict().items()})
    assert all(p.data.dtype == np.float32 for p in net.parameters())


def test_to_casts_every_parameter_and_keeps_ties():
    net = Net().to("float64")
    assert all(p.data.dtype == np.float64 for p in net.parameters())
    assert net.head.weight is net.embed.weight


def test_train_and_eval_reach_every_submodule():
    net = Net().eval()
    assert not any(m.training for _, m in net.named_modules())
    net.train()
    assert all(m.training for _, m in net.named_modules())
    assert [name for name, _ in net.named_modules()][:3] == ["", "embed", "h.0"]


def test_accumulate_adds_and_zero_grad_forgets():
    p = nn.Parameter(asarray(np.zeros((2, 3))))
    assert p.grad is None
    p.accumulate(asarray(np.ones((2, 3))))
    p.accumulate(asarray(np.ones((2, 3))))
    np.testing.assert_array_equal(to_numpy(p.grad), np.full((2, 3), 2.0))
    holder = nn.Module()
    holder.p = p
    holder.zero_grad()
    assert p.grad is None


def test_accumulate_rejects_a_gradient_of_the_wrong_shape():
    p = nn.Parameter(asarray(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"gradient of shape \(3, 2\) for a parameter of shape \(2, 3\)"):
        p.accumulate(asarray(np.zeros((3, 2))))
