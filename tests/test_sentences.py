"""Sentence vectors (minilm.training.sentences): the mean over the real tokens, unit length, the same whatever
the padding a batch adds; nearest neighbours by cosine. Their agreement with transformers on the real MiniLM is
in test_real_bert.py."""

import numpy as np
import pytest

import minilm
from bert_tiny import pretrain
from minilm.training.sentences import mean_pool, nearest, sentence_embeddings


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return minilm.load(pretrain(tmp_path_factory.mktemp("sentences"), max_iters=5))


def test_mean_pool_averages_the_masked_positions_only():
    hidden = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)  # (N=2, T=3, C=2)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    expected = np.array([[1.0, 2.0], [8.0, 9.0]])  # row 0: mean of positions 0 and 1; row 1: of all three
    np.testing.assert_allclose(mean_pool(hidden, mask, normalize=False), expected, rtol=1e-15)
    unit = mean_pool(hidden, mask)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(unit, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-15)


def test_a_text_gets_the_same_vector_alone_or_padded_beside_a_longer_one(tiny_bert):
    model, tokenizer = tiny_bert
    texts = ["to be", "that is the question, whether 'tis nobler"]
    together = sentence_embeddings(model, tokenizer, texts)
    alone = np.concatenate([sentence_embeddings(model, tokenizer, [text]) for text in texts])
    assert together.shape == (2, model.config.n_embd)
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)  # float32 sums over different lengths
    assert not np.allclose(together[0], together[1])  # and the two texts differ
    split = sentence_embeddings(model, tokenizer, texts * 3, batch_size=4)  # batches of 4 then 2
    np.testing.assert_allclose(split, np.concatenate([together] * 3), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="a list of texts, not one string"):
        sentence_embeddings(model, tokenizer, "to be")


def test_nearest_ranks_by_cosine_and_can_leave_a_row_out_of_its_own_neighbours():
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)], [-1.0, 0.0]])
    order, cosines = nearest(corpus[:2], corpus, k=3)
    assert order.tolist() == [[0, 2, 1], [1, 2, 0]]  # itself, the diagonal, then the orthogonal (before -1)
    np.testing.assert_allclose(cosines, [[1, np.sqrt(0.5), 0], [1, np.sqrt(0.5), 0]], atol=1e-15)
    order, _ = nearest(corpus[:2], corpus, k=1, exclude_self=True)
    assert order.tolist() == [[2], [2]]
    with pytest.raises(ValueError, match="k must be between 1 and 3, got 4"):
        nearest(corpus[:2], corpus, k=4, exclude_self=True)
    with pytest.raises(ValueError, match="queries have 3 channels and the corpus 2"):
        nearest(np.ones((1, 3)), corpus)
