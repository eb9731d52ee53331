"""BERT (minilm.models.bert), every head: finite differences, the torch twin, transformers' own BERT, padding_idx,
dropout in eval mode, a planted wrong backward, and the errors bad configs and inputs raise."""

import re

import numpy as np
import pytest
import torch
import transformers
from hypothesis import example, given
from hypothesis import strategies as st

from layer_checks import assert_close, assert_matches_torch
from minilm import to_numpy
from minilm.backend import asarray
from minilm.models import BERT, MODELS, BERTConfig
from minilm.models.bert import MLMHead
from minilm.nn import Tanh
from minilm.nn.module import Parameter
from minilm.optim import AdamW
from minilm.verify import reference
from minilm.verify.check import check_item
from minilm.verify.check_cases import vary_constants
from minilm.verify.check_items import ITEMS
from minilm.verify.check_models import BERT_SIZES, GPT_COORDS, POOLER_STD, bert_batch
from minilm.verify.gradcheck import check_module
from minilm.verify.tolerances import GRADCHECK, largest_magnitude

HEADS = ["mlm", "cls", "none"]
PAD = 0  # BERTConfig's pad_token_id
BERT_ROWS = [item for item in ITEMS if item.layer == "BERT"]


def realistic(model, rng):
    """BERT's init, constants offset by 0.02 and the pooler at a trained scale, as `minilm check` builds it."""
    vary_constants(model, rng, scale=0.02)
    if model.pooler is not None:
        pooler = model.pooler.weight
        pooler.data = asarray(rng.standard_normal(pooler.shape) * POOLER_STD, dtype=np.float32)
    return model


def unit_gain(model, rng):
    """Every weight matrix and table N(0, 1/fan_in) (the [PAD] row kept 0), constants offset by 0.1: inputs of
    order one at every LayerNorm. At BERT's 0.02 init with C = 2 or 3 the MLM head's LayerNorm divides by a std
    of ~2e-4 (rstd 5000), and central differences at h = 1e-5 then carry a truncation error (h · rstd)² ~ 3e-4
    (measured: it falls 100x for each 10x smaller h, so it is the step, not the backward)."""
    for _, param in model.named_parameters():
        if param.data.ndim == 2:
            param.data = asarray(rng.standard_normal(param.shape) / np.sqrt(param.shape[1]), dtype=np.float32)
    model.embeddings.wte.weight.data[model.config.pad_token_id] = 0
    return vary_constants(model, rng)


def tiny(head, seed=0, **fields):
    return realistic(BERT(BERTConfig(**{**BERT_SIZES, "head": head, **fields}), rng=seed), np.random.default_rng(seed))


def padded(seed=1, pad_id=PAD):
    """The `minilm check` batch (B = 3, T = 7, lengths 7, 5, 3), with [PAD] at every padded position, as a
    tokenizer writes it, and one [PAD] among the real tokens too (a real input may hold the id anywhere)."""
    ids, types, mask = (to_numpy(a) for a in bert_batch(np.random.default_rng(seed)))
    ids = np.where(mask == 1, ids, pad_id)
    ids[0, 3] = pad_id
    return ids, types, mask


def grads(model, *inputs, seed=0, **kwargs):
    """Forward, backward of a fixed random upstream gradient: (out, dout, {name: grad}) on the host, float64."""
    model.to("float64").zero_grad()
    out = model(*inputs, **kwargs)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    model.backward(asarray(dout))
    found = {name: to_numpy(p.grad).copy() if p.grad is not None else np.zeros(p.shape)
             for name, p in model.named_parameters()}
    return to_numpy(out), dout, found


# --- finite differences ----------------------------------------------------------------------------------

@pytest.mark.parametrize("head", HEADS)
def test_gradcheck_every_parameter_on_a_padded_batch_with_segments(head):
    model = tiny(head)
    ids, types, mask = bert_batch(np.random.default_rng(1))  # no [PAD] id: padding_idx is checked apart below
    report = check_module(model, ids, max_coords=GPT_COORDS, token_type_ids=types, attention_mask=mask)
    assert len(report.errors) == len(model.parameters())
    assert report.passed(GRADCHECK["model"]), str(report)


@pytest.mark.parametrize("head", HEADS)
def test_pad_ids_change_only_the_pad_row_of_wte(head):
    """With [PAD] in the ids, padding_idx makes the pad row's gradient zero by rule, not the derivative. Off, the
    backward is the derivative everywhere (finite differences agree); on, only the pad row changes: to zero, or
    for the MLM head to the tied decoder's share alone, as torch does (transformers' BertForMaskedLM too)."""
    model, (ids, types, mask) = tiny(head), padded()
    model.embeddings.wte.padding_idx = None
    report = check_module(model, ids, max_coords=GPT_COORDS, token_type_ids=types, attention_mask=mask)
    assert report.passed(GRADCHECK["model"]), str(report)
    _, _, free = grads(model, ids, token_type_ids=types, attention_mask=mask)
    model.embeddings.wte.padding_idx = PAD
    _, dout, ruled = grads(model, ids, token_type_ids=types, attention_mask=mask)
    for name, grad in ruled.items():
        rows = np.arange(len(grad)) != PAD if name == "embeddings.wte.weight" else slice(None)
        np.testing.assert_array_equal(grad[rows], free[name][rows], err_msg=name)
    pad_row = ruled["embeddings.wte.weight"][PAD]
    assert not np.array_equal(pad_row, free["embeddings.wte.weight"][PAD])  # the lookup's share was real
    if head == "mlm":  # logits = h_m wteᵀ + b, so the decoder gives row v the sum over (B, T) of dlogits[..., v] h_m
        decoder_share = dout[..., PAD].reshape(-1) @ to_numpy(model.mlm.decoder.x).reshape(-1, BERT_SIZES["n_embd"])
        np.testing.assert_allclose(pad_row, decoder_share, rtol=1e-12)
    else:
        assert not pad_row.any()


@pytest.mark.parametrize("pad_token_id", [0, 6])
def test_pad_row_starts_at_zero_and_only_the_tied_decoder_trains_it(pad_token_id):
    ids, types, mask = padded(pad_id=pad_token_id)
    for head in HEADS:
        model = BERT(BERTConfig(**BERT_SIZES, head=head, pad_token_id=pad_token_id), rng=0)
        wte = model.embeddings.wte.weight
        table = to_numpy(wte.data)
        assert not table[pad_token_id].any() and np.delete(table, pad_token_id, axis=0).any(axis=1).all()
        optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        for step in range(2):
            grads(model, ids, seed=step, token_type_ids=types, attention_mask=mask)
            optimizer.step()
        # cls, none: never trained, as torch's padding_idx; mlm: the tied decoder moves it, as in transformers
        assert to_numpy(wte.data)[pad_token_id].any() == (head == "mlm"), head


def test_tied_wte_receives_the_sum_of_its_two_gradients():
    ids, types, mask = padded()
    tied, untied = tiny("mlm"), tiny("mlm")
    assert tied.mlm.decoder.weight is tied.embeddings.wte.weight
    untied.mlm.decoder.weight = Parameter(untied.embeddings.wte.weight.data.copy())
    _, _, both = grads(tied, ids, token_type_ids=types, attention_mask=mask)
    _, _, apart = grads(untied, ids, token_type_ids=types, attention_mask=mask)
    lookup, decoder = apart["embeddings.wte.weight"], apart["mlm.decoder.weight"]
    np.testing.assert_allclose(both["embeddings.wte.weight"], lookup + decoder, rtol=1e-12, atol=1e-15)
    assert np.abs(lookup).max() > 0.1 * np.abs(decoder).max()  # neither share is negligible


# --- the torch twin ----------------------------------------------------------------------------------------

def assert_twin_matches(model, ids, dtype, **kwargs):
    """Output and every parameter gradient against minilm.verify.reference's BERT twin (a whole model in float32:
    tolerances.TORCH["float32_model"], as the GPT's)."""
    model.to(dtype)
    pairs = reference.compare(model, ids, **kwargs)
    assert set(pairs) == {"out"} | {f"d{name}" for name, _ in model.named_parameters()}
    kind = "float64" if dtype == "float64" else "float32_model"
    weights = [to_numpy(p.data) for p in model.parameters()]
    largest = largest_magnitude([theirs for _, theirs in pairs.values()] + weights)
    for name, (ours, theirs) in pairs.items():
        assert ours.dtype == theirs.dtype == np.dtype(dtype), name
        assert_close(ours, theirs, kind, f"BERT {name} differs from torch ({dtype})", largest)
    return pairs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("head", HEADS)
def test_output_and_every_gradient_match_the_torch_twin(head, dtype):
    ids, types, mask = padded()
    pairs = assert_twin_matches(tiny(head), ids, dtype, token_type_ids=types, attention_mask=mask)
    assert pairs["out"][0].shape == {"mlm": (3, 7, 11), "cls": (3, 5), "none": (3, 7, 12)}[head]


@pytest.mark.parametrize("row", BERT_ROWS, ids=lambda item: item.name)
def test_the_check_rows_pass_in_float32_and_at_another_seed(row):
    """`minilm check BERT --dtype float32 --seed 3` (tests/test_check.py runs every row in float64 at seed 0)."""
    result = check_item(row, "float32", seed=3, reference=reference)
    assert result["passed"] is True and result["torch_error"] > 1e-12, result  # really compared in float32


@given(b=st.integers(1, 3), t=st.integers(1, 6), n_layer=st.integers(1, 2), n_head=st.integers(1, 3),
       hs=st.integers(3, 5), vocab=st.integers(2, 9), head=st.sampled_from(HEADS),
       masked=st.booleans(), segments=st.booleans(), seed=st.integers(0, 2**16))
@example(b=1, t=1, n_layer=1, n_head=1, hs=3, vocab=2, head="mlm", masked=False, segments=False, seed=0)
@example(b=2, t=6, n_layer=2, n_head=3, hs=4, vocab=9, head="cls", masked=True, segments=True, seed=1)
def test_any_size_matches_the_twin_and_finite_differences(b, t, n_layer, n_head, hs, vocab, head, masked, segments,
                                                           seed):
    """Edges included: a batch of one, T = 1, one head, one layer, a two-token vocabulary, defaults for the
    optional arguments. Weights at unit gain (see unit_gain), and C ≥ 3: a LayerNorm over C = 2 outputs ±(1, -1)
    whatever its input, so all below it has gradient ~eps/var, which differences resolve only to rounding.
    The twin runs with padding_idx (ids hold [PAD] where padded); finite differences with it
    off, since by rule it is not the derivative of the lookup (test_pad_ids_change_only_the_pad_row_of_wte)."""
    rng = np.random.default_rng(seed)
    config = BERTConfig(vocab_size=vocab, block_size=t + int(rng.integers(0, 3)), n_layer=n_layer, n_head=n_head,
                        n_embd=n_head * hs, d_ff=int(rng.integers(1, 9)), num_labels=int(rng.integers(1, 4)),
                        dropout=0.0, head=head)
    model = unit_gain(BERT(config, rng=seed), rng)
    mask = (np.arange(t) < rng.integers(1, t + 1, (b, 1))).astype(np.int64)  # (B, T): every row keeps key 0
    ids = np.where(mask == 1, rng.integers(0, vocab, (b, t)), PAD)
    kwargs = {}
    if masked:
        kwargs["attention_mask"] = mask
    if segments:
        kwargs["token_type_ids"] = rng.integers(0, 2, (b, t)) * mask
    assert_matches_torch(model, ids, dtype="float64", **kwargs)
    model.embeddings.wte.padding_idx = None
    report = check_module(model, ids, max_coords=3, seed=seed, **kwargs)  # stratification: the fixed-size tests
    assert report.passed(GRADCHECK["model"]), str(report)


# --- transformers' BERT ------------------------------------------------------------------------------------

HF_CLASSES = {"mlm": transformers.BertForMaskedLM, "cls": transformers.BertForSequenceClassification,
              "none": transformers.BertModel}
# minilm's names -> transformers' (a name map written here, apart from minilm.files's, so the two check each other)
HF_RULES = [
    (r"embeddings\.wte\.", "embeddings.word_embeddings."), (r"embeddings\.wpe\.", "embeddings.position_embeddings."),
    (r"embeddings\.wtt\.", "embeddings.token_type_embeddings."), (r"embeddings\.ln\.", "embeddings.LayerNorm."),
    (r"^h\.(\d+)\.attn\.in_proj_(weight|bias)$", r"encoder.layer.\1.attention.self.{}.\2"),
    (r"^h\.(\d+)\.attn\.out_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^h\.(\d+)\.ln_1\.", r"encoder.layer.\1.attention.output.LayerNorm."),
    (r"^h\.(\d+)\.mlp\.c_fc\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^h\.(\d+)\.mlp\.c_proj\.", r"encoder.layer.\1.output.dense."),
    (r"^h\.(\d+)\.ln_2\.", r"encoder.layer.\1.output.LayerNorm."),
    (r"^pooler\.", "pooler.dense."),
]
HF_HEAD_NAMES = {"mlm.dense.": "cls.predictions.transform.dense.", "mlm.ln.": "cls.predictions.transform.LayerNorm.",
                 "mlm.decoder.bias": "cls.predictions.bias", "classifier.": "classifier."}


def hf_parameters(name, hf, head):
    """The transformers parameters holding minilm's ``name``: three (query, key, value) for in_proj_*, else one."""
    for ours, theirs in HF_HEAD_NAMES.items():
        if name.startswith(ours):
            return [hf.get_parameter(theirs + name[len(ours):])]
    for pattern, replacement in HF_RULES:
        if re.search(pattern, name):
            hf_name = re.sub(pattern, replacement, name)
            base = "" if head == "none" else "bert."
            parts = [hf_name.format(p) for p in ("query", "key", "value")] if "{}" in hf_name else [hf_name]
            return [hf.get_parameter(base + part) for part in parts]
    raise KeyError(name)


def hf_twin(model):
    cfg = model.config
    hf_config = transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, intermediate_size=cfg.ff_width, hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.block_size, type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps, pad_token_id=cfg.pad_token_id, num_labels=cfg.num_labels,
        attn_implementation="eager")  # the reference formula, masked keys weighted exp(min - max) = 0
    hf = HF_CLASSES[cfg.head](hf_config).double().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            hf_params = hf_parameters(name, hf, cfg.head)
            for hf_param, part in zip(hf_params, np.split(to_numpy(param.data), len(hf_params))):
                hf_param.copy_(torch.from_numpy(part))
    # every transformers parameter is reached (tied ones once, as minilm lists them)
    reached = sum(len(hf_parameters(name, hf, cfg.head)) for name, _ in model.named_parameters())
    assert reached == len(list(hf.parameters()))
    return hf


def hf_configs():
    return st.fixed_dictionaries(dict(
        vocab_size=st.integers(2, 13), n_layer=st.integers(1, 3), n_head=st.integers(1, 3), hs=st.integers(2, 5),
        d_ff=st.integers(1, 16), type_vocab_size=st.integers(1, 3), num_labels=st.integers(1, 4),
        layer_norm_eps=st.sampled_from([1e-12, 1e-5]), head=st.sampled_from(HEADS)))


@given(fields=hf_configs(), b=st.integers(1, 3), t=st.integers(1, 8), seed=st.integers(0, 2**16))
@example(fields=dict(vocab_size=11, n_layer=2, n_head=2, hs=6, d_ff=20, type_vocab_size=2, num_labels=5,
                     layer_norm_eps=1e-12, head="mlm"), b=3, t=7, seed=0)
def test_outputs_and_every_gradient_match_transformers(fields, b, t, seed):
    """BertForMaskedLM / BertForSequenceClassification / BertModel on the same weights, float64, a padded batch
    with segments and [PAD] ids. Everything is compared, the padded query rows too: their outputs are garbage
    nobody reads, but both libraries compute them the same way (attention over the real keys), so they match,
    and their gradients flow into the weights through the fake loss."""
    rng = np.random.default_rng(seed)
    fields = dict(fields)
    fields["n_embd"] = fields["n_head"] * fields.pop("hs")
    fields["pad_token_id"] = int(rng.integers(0, fields["vocab_size"]))
    model = realistic(BERT(BERTConfig(block_size=t + 1, dropout=0.0, **fields), rng=seed), rng).to("float64")
    hf = hf_twin(model)
    mask = (np.arange(t) < rng.integers(1, t + 1, (b, 1))).astype(np.int64)  # (B, T)
    ids = np.where(mask == 1, rng.integers(0, fields["vocab_size"], (b, t)), fields["pad_token_id"])
    types = rng.integers(0, fields["type_vocab_size"], (b, t)) * mask

    out, dout, ours = grads(model, ids, seed=seed, token_type_ids=types, attention_mask=mask)
    result = hf(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                attention_mask=torch.from_numpy(mask))
    theirs = result.last_hidden_state if fields["head"] == "none" else result.logits
    (theirs * torch.from_numpy(dout)).sum().backward()
    pairs = {"out": (out, theirs.detach().numpy())}
    if fields["head"] == "none":  # BertModel's second output, from the pooler minilm keeps for it
        pooled = model.pooler_act(model.pooler(asarray(out[:, 0])))
        pairs["pooler_output"] = (to_numpy(pooled), result.pooler_output.detach().numpy())
    for name, _ in model.named_parameters():
        hf_params = hf_parameters(name, hf, fields["head"])
        hf_grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in hf_params]
        pairs[f"d{name}"] = (ours[name], torch.cat(hf_grads).numpy())
    largest = largest_magnitude([v for _, v in pairs.values()] + [to_numpy(p.data) for p in model.parameters()])
    for name, (a, expected) in pairs.items():
        assert_close(a, expected, "float64", f"{name} differs from transformers", largest)


def test_a_sequence_of_padding_only_stays_finite_and_leaves_the_others_alone():
    """attention_mask all 0 in one row: minilm.nn.sdpa's documented rule gives its queries zero attention output,
    transformers' additive finfo.min mask uniform weights over the padding; that row differs (garbage either way,
    and finite), every other sequence of the batch still matches."""
    model = tiny("none").to("float64")
    ids, types, mask = padded()
    mask[2] = 0
    ours = to_numpy(model(ids, token_type_ids=types, attention_mask=mask))
    theirs = hf_twin(model)(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                            attention_mask=torch.from_numpy(mask)).last_hidden_state.detach().numpy()
    assert np.isfinite(ours).all() and np.abs(ours[2] - theirs[2]).max() > 1e-3
    assert_close(ours[:2], theirs[:2], "float64", "the sequences with real tokens")
    model.backward(asarray(np.ones_like(ours)))
    assert all(np.isfinite(to_numpy(p.grad)).all() for p in model.parameters() if p.grad is not None)


# --- dropout, names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("head", HEADS)
def test_dropout_is_off_in_eval_mode(head):
    ids, types, mask = padded()
    dropped, plain = tiny(head, dropout=0.3), tiny(head, dropout=0.0)
    plain.load_state_dict(dropped.state_dict())
    a = grads(dropped.eval(), ids, token_type_ids=types, attention_mask=mask)
    b = grads(plain.eval(), ids, token_type_ids=types, attention_mask=mask)
    np.testing.assert_array_equal(a[0], b[0])
    for name in a[2]:
        np.testing.assert_array_equal(a[2][name], b[2][name], err_msg=name)
    trained = grads(dropped.train(), ids, token_type_ids=types, attention_mask=mask)[0]
    assert not np.allclose(trained, a[0])  # and in training mode it does drop


def test_parameter_names_and_heads():
    names = {head: [name for name, _ in tiny(head).named_parameters()] for head in HEADS}
    assert names["none"][:5] == ["embeddings.wte.weight", "embeddings.wpe.weight", "embeddings.wtt.weight",
                                 "embeddings.ln.weight", "embeddings.ln.bias"]
    assert "h.1.attn.in_proj_weight" in names["none"] and names["none"][-2:] == ["pooler.weight", "pooler.bias"]
    assert names["mlm"][-5:] == ["mlm.dense.weight", "mlm.dense.bias", "mlm.ln.weight", "mlm.ln.bias",
                                 "mlm.decoder.bias"]  # decoder.weight is wte's; no pooler, as BertForMaskedLM
    assert names["cls"][-4:] == ["pooler.weight", "pooler.bias", "classifier.weight", "classifier.bias"]
    assert "mlm.decoder.weight" in tiny("mlm").state_dict()  # the tied name is saved too, as torch does
    assert MODELS["bert"] == (BERTConfig, BERT)  # config.json model_type "bert"


# --- a planted wrong backward is caught ----------------------------------------------------------------------

def test_forgotten_tanh_derivative_in_the_pooler_is_caught(monkeypatch):
    monkeypatch.setattr(Tanh, "backward", lambda self, dy: dy)  # tanh' = 1 - y² forgotten
    ids, types, mask = bert_batch(np.random.default_rng(1))
    only = ["pooler.weight", "classifier.weight"]  # below the pooler, and above it
    report = check_module(tiny("cls"), ids, max_coords=GPT_COORDS, only=only, token_type_ids=types, attention_mask=mask)
    assert report.errors["pooler.weight"] > 0.1 and report.errors["classifier.weight"] < GRADCHECK["model"]
    # at the 0.02 init tanh is nearly the identity on [CLS] (|p| ≤ 0.14): the same bug is ~1% off, still caught
    plain = BERT(BERTConfig(**BERT_SIZES, head="cls"), rng=0)
    report = check_module(plain, ids, max_coords=GPT_COORDS, only=only, token_type_ids=types, attention_mask=mask)
    assert 1e-3 < report.errors["pooler.weight"] < 0.1
    row = check_item(next(item for item in BERT_ROWS if "classifier" in item.name), "float64", 0, reference=None)
    assert row["passed"] is False  # the row `minilm check BERT` prints, on its finite differences alone


def drop_tied_decoder_gradient(self, dlogits):
    """MLMHead.backward with the decoder's share of the tied wte gradient lost (the one Parameter overwritten)."""
    before = self.decoder.weight.grad
    before = None if before is None else before.copy()  # accumulate adds in place
    dx = self.decoder.backward(dlogits)
    self.decoder.weight.grad = before
    return self.dense.backward(self.act.backward(self.ln.backward(dx)))


def uses_mlm_head(item):
    return item.owner is MLMHead or (item.layer == "BERT" and item.anchor == 'head "mlm":')


def test_dropped_tied_decoder_gradient_is_caught(monkeypatch):
    monkeypatch.setattr(MLMHead, "backward", drop_tied_decoder_gradient)
    ids, types, mask = bert_batch(np.random.default_rng(1))
    report = check_module(tiny("mlm"), ids, max_coords=GPT_COORDS, token_type_ids=types, attention_mask=mask)
    failed = {name for name, err in report.errors.items() if err >= GRADCHECK["model"]}
    assert failed == {"embeddings.wte.weight"} and report.errors["embeddings.wte.weight"] > 0.1
    rows = {item.name: check_item(item, "float64", 0, reference=None) for item in ITEMS if uses_mlm_head(item)}
    assert set(rows) == {"MLM head", "BERT (MLM head)"} and not any(row["passed"] for row in rows.values())
    assert rows["BERT (MLM head)"]["errors"]["fd"]["embeddings.wte.weight"] > 0.1


# --- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("vocab_size", 0, "vocab_size must be a positive integer, got 0"),
    ("n_layer", True, "n_layer must be a positive integer, got True"),
    ("block_size", 9.0, "block_size must be a positive integer, got 9.0"),
    ("type_vocab_size", 0, "type_vocab_size must be a positive integer, got 0"),
    ("num_labels", -1, "num_labels must be a positive integer, got -1"),
    ("d_ff", -4, "d_ff must be a non-negative integer, got -4"),
    ("n_head", 5, "n_embd 12 is not divisible by n_head 5"),
    ("pad_token_id", 11, "pad_token_id 11 out of range for vocab_size 11"),
    ("head", "lm", "head must be one of .*, got 'lm'"),
    ("dropout", 1.0, r"dropout must be in \[0, 1\), got 1.0"),
    ("layer_norm_eps", 0.0, "layer_norm_eps must be positive, got 0.0"),
])
def test_bad_config_names_the_field_and_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        BERTConfig(**{**BERT_SIZES, field: value})


def test_bad_inputs_are_named():
    model = tiny("mlm")
    ids, types, mask = padded()
    with pytest.raises(ValueError, match="token id 11 out of range for vocab_size 11"):
        model(np.array([[2, 11, 3]]))
    with pytest.raises(ValueError, match="token id -1 out of range for vocab_size 11"):
        model(np.array([[2, -1, 3]]))
    with pytest.raises(ValueError, match="sequence length 10 exceeds block_size 9"):
        model(np.ones((1, 10), dtype=np.int64))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(3, 6\), ids \(3, 7\)"):
        model(ids, attention_mask=mask[:, :6])
    with pytest.raises(ValueError, match=r"token_type_ids has shape \(1, 7\), ids \(3, 7\)"):
        model(ids, token_type_ids=types[:1])  # would broadcast forward, then fail in backward
    with pytest.raises(ValueError, match="token id 2 out of range for vocab_size 2"):
        model(ids, token_type_ids=types + 1)
    with pytest.raises(ValueError, match=r"BERT expects ids of shape \(B, T\) and integer dtype, got \(7,\) int64"):
        model(ids[0])
    with pytest.raises(ValueError, match="integer dtype, got .* float64"):
        model(ids.astype(np.float64))
