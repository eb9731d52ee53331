"""A BERT's encoder under another head: the classifier a fine-tuning run starts from, the encoder `embed` reads.

with_head:  a BERT of the same shape with ``head`` ("cls", "none"), every encoder tensor (embeddings, blocks)
            copied from the source, the pooler too where the source has one (a BertModel, a classifier), as
            transformers' from_pretrained copies whatever the checkpoint holds; what it lacks (the pooler of a
            masked LM, always a new classifier) keeps BERT's initialisation, N(0, 0.02²) weights and zero
            biases, drawn from the run's seed. An MLM head is dropped. A classifier is kept only when asked:
            a checkpoint already fine-tuned on the same labels continues with its own.
sources:    a minilm checkpoint of type bert (any head; a training output folder reads its best) or a
            Hugging Face BERT folder (minilm.files.hf_bert, its vocab.txt the tokenizer). Anything else is
            refused naming both types: a GPT cannot be fine-tuned as a classifier here.
ref:        Devlin et al. 2019, §4 (fine-tuning: the [CLS] representation into a new K-way output layer);
            transformers' PreTrainedModel.from_pretrained ("newly initialized" weights)
"""

import dataclasses

from minilm.files.hf_bert import bert_tokenizer, folder_head, load_bert
from minilm.files.hf_folder import read_config
from minilm.files.loader import load_model, resolve_checkpoint
from minilm.models import BERT

HEAD_PARAMS = ("pooler.", "mlm.", "classifier.")  # the names of the tensors outside the encoder


def with_head(config, state, head, rng=None, keep_classifier=False, **changes):
    """The BERT of ``config`` with ``head`` and ``changes`` (num_labels, label_names, dropout), its tensors from
    ``state`` (name -> array) as the module docstring says, in the dtype of state's word embeddings."""
    model = BERT(dataclasses.replace(config, head=head, **changes), rng=rng)
    model.to(state["embeddings.wte.weight"].dtype)
    own = model.state_dict()
    missing = [name for name in own if not name.startswith(HEAD_PARAMS) and name not in state]
    if missing:
        raise ValueError(f"the encoder to start from lacks {len(missing)} tensors, first {missing[0]}")
    kept = {name: array for name, array in state.items()
            if name in own and (keep_classifier or not name.startswith("classifier."))}
    model.load_state_dict(kept, strict=False)  # a shape that differs is still an error, named
    return model


def read_encoder(path, user, dropout=None, rng=None):
    """(BERTConfig, state, tokenizer) of a minilm BERT checkpoint or a Hugging Face BERT folder ``path``;
    ``user`` (a command) is named in a refusal. dropout: a Hugging Face folder's several dropouts must agree
    unless it is given (hf_bert_config); with_head sets the one the new model uses."""
    folder = resolve_checkpoint(path)
    try:
        hf = read_config(folder)
    except FileNotFoundError:
        hf = None  # not a Hugging Face folder: the checkpoint loader names what is missing
    if hf is not None and "model" not in hf and "model_type" in hf:  # a transformers config.json, not minilm's
        if hf["model_type"] != "bert":
            raise ValueError(f"{user} needs a model of type bert, but {path} is a Hugging Face "
                             f"{hf['model_type']} folder (its config.json's model_type)")
        tokenizer = bert_tokenizer(folder)
        if tokenizer is None:
            raise FileNotFoundError(f"{path} has no vocab.txt or tokenizer.json: {user} needs the folder's tokenizer")
        head = None if folder_head(hf, strict=False) else "none"  # no known architecture: read the encoder
        model = load_bert(folder, rng=rng, dropout=dropout, head=head)
    else:
        model, tokenizer, _ = load_model(folder, expect=("bert",), user=user)
    return model.config, model.state_dict(), tokenizer


def init_classifier(path, task, dropout, seed, user="minilm finetune"):
    """(model, tokenizer, task): the encoder at ``path`` under a new "cls" head for ``task``'s labels, in
    training mode; a classifier whose label set holds the task's keeps its head, the task renumbered to it."""
    config, state, tokenizer = read_encoder(path, user, dropout=dropout, rng=seed)
    keep = config.head == "cls" and config.label_names is not None and set(task.label_names) <= set(config.label_names)
    if keep:
        task = task.relabel(config.label_names)
    model = with_head(config, state, "cls", rng=seed, keep_classifier=keep, dropout=dropout,
                      num_labels=task.num_labels, label_names=list(task.label_names))
    return model.train(), tokenizer, task
