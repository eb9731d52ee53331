"""Sentence vectors from a BERT's encoder, and the nearest neighbours they give: what all-MiniLM-L6-v2 was
trained for (sentence-transformers' Pooling then Normalize modules, its modules.json).

    h = encoder([CLS] text [SEP])                    (N, T, C) last hidden states, [PAD] to the longest text
    v_n = Σ_t m_nt h_nt / Σ_t m_nt                   the mean over the real tokens (m: the attention mask)
    e_n = v_n / ‖v_n‖                                unit length: e_i · e_j is the cosine of the two texts
    neighbours of q among e_1 … e_N: the k largest e_q · e_n

[CLS] and [SEP] count as tokens of the mean, as sentence-transformers counts them. A model with a head (a
classifier, a masked LM) is read through its encoder alone (heads.with_head), as `minilm embed` does.
ref: Reimers & Gurevych 2019 (Sentence-BERT), §3: MEAN pooling, compared by cosine similarity.
"""

import numpy as np

from minilm.backend import to_numpy
from minilm.data.tasks import Task
from minilm.nn import inference
from minilm.training.heads import with_head
from minilm.training.objectives import Classification

BATCH = 64  # texts per forward pass: padding grows with the longest text of a batch


def encoder_of(model):
    """``model`` itself when it has no head, else its encoder (the same weights, the head dropped)."""
    if model.config.head == "none":
        return model
    return with_head(model.config, model.state_dict(), "none", rng=0)


def mean_pool(hidden, mask, normalize=True):
    """(N, C) float64 NumPy: the mean of ``hidden`` (N, T, C) over the positions where ``mask`` (N, T) is 1, of
    unit length unless ``normalize`` is False (the module docstring's v_n and e_n)."""
    hidden, kept = to_numpy(hidden).astype(np.float64), to_numpy(mask)[..., None]
    v = (hidden * kept).sum(axis=1) / kept.sum(axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True) if normalize else v


def sentence_embeddings(model, tokenizer, texts, normalize=True, batch_size=BATCH):
    """(N, C) float64 NumPy: each text's mean-pooled last hidden state, of unit length unless ``normalize`` is
    False; texts longer than the model's context are cut to it, as fine-tuning cuts them."""
    if isinstance(texts, str):
        raise TypeError("sentence_embeddings takes a list of texts, not one string")
    encoder = encoder_of(model).eval()
    objective = Classification().for_tokenizer(tokenizer)
    examples = objective.encode(Task("texts", ["-"], list(texts), [0] * len(texts)), model.config.block_size)
    vectors = []
    with inference():
        for (ids, types, mask), _ in objective.every_batch(examples, batch_size, model.config.block_size):
            vectors.append(mean_pool(encoder(ids, types, mask), mask, normalize))  # (B, C)
    return np.concatenate(vectors) if vectors else np.zeros((0, model.config.n_embd))


def nearest(queries, corpus, k=5, exclude_self=False):
    """(indices, cosines), each (Q, k): the k rows of ``corpus`` (N, C) most similar to each row of ``queries``
    (Q, C), most similar first; both of unit length. exclude_self: queries are corpus rows 0..Q-1, and a row is
    not its own neighbour."""
    if queries.shape[-1] != corpus.shape[-1]:
        raise ValueError(f"queries have {queries.shape[-1]} channels and the corpus {corpus.shape[-1]}")
    if not 1 <= k <= corpus.shape[0] - exclude_self:
        raise ValueError(f"k must be between 1 and {corpus.shape[0] - exclude_self}, got {k}")
    cosines = queries @ corpus.T  # (Q, N)
    if exclude_self:
        cosines[np.arange(len(queries)), np.arange(len(queries))] = -np.inf
    order = np.argsort(-cosines, axis=1, kind="stable")[:, :k]  # (Q, k)
    return order, np.take_along_axis(cosines, order, axis=1)
