"""The baselines a fine-tuned classifier is judged against: chance, the majority class, and bag-of-words
logistic regression, computed on the same splits in the same run.

bag of words:  x_w = log(1 + count of word w in the text), over the W most frequent words of the training
               texts (lower-cased runs of letters and apostrophes); words outside them are dropped
logistic regression:  logits = x Wᵀ + b (K classes), loss = CE(logits, y) + λ/2 ‖W‖², full-batch Adam;
               the layers are minilm's own Linear and CrossEntropyLoss, so nothing here is new maths.
               λ and the number of steps are fixed, not tuned on the held-out split, so the baseline's
               accuracy is an honest held-out figure.
"""

import re
from collections import Counter

import numpy as np

from minilm.backend import asarray, to_numpy
from minilm.nn import CrossEntropyLoss, Linear
from minilm.optim import Adam

WORD = re.compile(r"[a-z']+")
MAX_WORDS = 2000  # features: the most frequent words of the training texts
STEPS, LR, L2 = 100, 0.1, 1e-3  # full-batch Adam: on the speakers task 60, 100 and 300 steps give the same accuracy


def word_vocabulary(texts, max_words=MAX_WORDS):
    """{word: column} for the max_words most frequent words of ``texts`` (ties by the word: deterministic)."""
    counts = Counter(word for text in texts for word in WORD.findall(text.lower()))
    ranked = sorted(counts, key=lambda word: (-counts[word], word))[:max_words]
    return {word: column for column, word in enumerate(ranked)}


def bag_of_words(texts, vocabulary):
    """(N, W) float64 features log(1 + count) of each vocabulary word in each text."""
    X = np.zeros((len(texts), len(vocabulary)))
    for row, text in enumerate(texts):
        for word in WORD.findall(text.lower()):
            column = vocabulary.get(word)
            if column is not None:
                X[row, column] += 1
    return np.log1p(X)


def fit_logistic_regression(X, y, num_labels, steps=STEPS, lr=LR, l2=L2, seed=0):
    """A Linear(W, K) trained on features X (N, W) and labels y (N,) to minimise CE + λ/2 ‖W‖²."""
    model = Linear(X.shape[1], num_labels, rng=seed).to("float64")
    model.weight.data *= 0  # a convex problem: start from zero, the same answer every time
    criterion, optimizer = CrossEntropyLoss(), Adam(model.parameters(), lr=lr)
    X, y = asarray(X), asarray(np.asarray(y))
    for _ in range(steps):
        model.zero_grad()
        criterion(model(X), y)
        model.backward(criterion.backward())
        model.weight.grad += l2 * model.weight.data  # the penalty's gradient λ W (biases are not penalised)
        optimizer.step()
    return model


def accuracy(logits, labels):
    return float(np.mean(np.argmax(to_numpy(logits), axis=-1) == np.asarray(labels)))


def baselines(train, test):
    """{"chance", "majority", "bag of words"}: held-out accuracies on ``test`` (a Task) after fitting on ``train``."""
    majority = Counter(train.labels).most_common(1)[0][0]
    vocabulary = word_vocabulary(train.texts if train.text_pairs is None else
                                 [a + " " + b for a, b in zip(train.texts, train.text_pairs)])

    def features(task):
        texts = task.texts if task.text_pairs is None else [a + " " + b for a, b in zip(task.texts, task.text_pairs)]
        return bag_of_words(texts, vocabulary)

    model = fit_logistic_regression(features(train), train.labels, train.num_labels)
    return {"chance": 1 / train.num_labels,
            "majority": float(np.mean(np.asarray(test.labels) == majority)),
            "bag of words": accuracy(model(asarray(features(test))), test.labels)}
