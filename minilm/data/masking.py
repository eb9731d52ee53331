"""BERT's masking: which tokens a masked language model must guess, and what it sees in their place.

choose:   u[b, t] ~ U[0, 1);  chosen[b, t] = u[b, t] < p  and  ids[b, t] is not a special token
          (p = 0.15; [PAD], [UNK], [CLS], [SEP] and [MASK] are never chosen, so padding never is)
replace:  v[b, t] ~ U[0, 1) at a chosen position:
              v < 0.8          the input becomes [MASK]                              (80%)
              0.8 <= v < 0.9   the input becomes r[b, t] ~ U{ordinary tokens}         (10%)
              v >= 0.9         the input keeps its token                             (10%)
labels:   labels[b, t] = ids[b, t] where chosen, else -100 (CrossEntropyLoss's ignore_index): the loss
          counts the chosen positions only, about 15% of them
shapes:   ids, masked, labels (B, T) int64 on the host; p, the split 0.8 / 0.1 / 0.1 are scalars
count:    a Bernoulli(p) draw per position, as transformers' DataCollatorForLanguageModeling, so figures
          compare with its runs: the number chosen in a window varies (mean p·T, sd √(p(1-p)T)), and a
          window may have none (a batch with none has loss 0 by CrossEntropyLoss's rule, never NaN).
          Its second and third Bernoullis (0.8, then 0.5 of the rest) are the one uniform v here: the same
          distribution. Not exactly round(p·T) per window, as Devlin et al.'s create_pretraining_data.py.
random:   the random replacement is drawn from the ordinary tokens only (the vocabulary less the special
          ones), where transformers draws from the whole vocabulary: a [PAD] or [CLS] in mid-text is noise
          that real text never shows. u, v and r are drawn for every position, chosen or not, in that order
          from the one ``rng`` (a host NumPy Generator), so the draws a batch takes depend on its shape
          alone: a run that saves ``rng.bit_generator.state`` and resumes masks exactly as an uninterrupted
          one, as minilm.data.batching's windows.
ref:      Devlin et al. 2019, "BERT", §3.1 (Task #1: Masked LM) and appendix A.1;
          transformers' DataCollatorForLanguageModeling.torch_mask_tokens
"""

import numpy as np

IGNORE_INDEX = -100  # CrossEntropyLoss's default ignore_index, as torch's
MLM_PROBABILITY = 0.15  # share of (non-special) positions chosen, BERT's
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the chosen: [MASK], a random token; the rest (0.1) keep theirs


def mask_tokens(ids, rng, mask_id, special_ids, vocab_size, probability=MLM_PROBABILITY):
    """(masked, labels), each (B, T) int64 on the host, from token ids (B, T); see the module doc.

    mask_id: the [MASK] id; special_ids: every id never chosen nor drawn as a replacement ([MASK] and [PAD]
    among them); vocab_size: V, the ordinary tokens being [0, V) less special_ids.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a NumPy Generator on the host (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"masking probability must be in [0, 1], got {probability}")
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integer token ids, got dtype {ids.dtype}")
    special = np.asarray(sorted(set(int(i) for i in special_ids)), dtype=np.int64)  # (S,)
    if mask_id not in special:
        raise ValueError(f"mask_id {mask_id} must be one of the special ids {special.tolist()}")
    ordinary = np.setdiff1d(np.arange(vocab_size), special)  # (V - S,) the ids a replacement may take
    if ordinary.size == 0:
        raise ValueError(f"no ordinary tokens to draw replacements from: all {vocab_size} ids are special")
    u = rng.random(ids.shape)  # (B, T) chooses the positions to predict
    v = rng.random(ids.shape)  # (B, T) chooses what a chosen position shows
    r = ordinary[rng.integers(0, ordinary.size, size=ids.shape)]  # (B, T) a random ordinary token per position
    chosen = (u < probability) & ~np.isin(ids, special)  # (B, T)
    labels = np.where(chosen, ids, IGNORE_INDEX).astype(np.int64)  # (B, T)
    masked = ids.astype(np.int64)  # (B, T) a copy: the caller's ids stay as they were
    masked[chosen & (v < MASK_SHARE)] = mask_id
    swap = chosen & (v >= MASK_SHARE) & (v < MASK_SHARE + RANDOM_SHARE)  # (B, T)
    masked[swap] = r[swap]
    return masked, labels
