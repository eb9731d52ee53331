"""Layers with hand-written forward and backward passes, named and shaped like their ``torch.nn`` twins.

May import: minilm.backend only. ``inference()`` is the switch under which forwards keep nothing for backward.
"""

from minilm.nn.activation import GELU, ReLU, Tanh
from minilm.nn.attention import MultiHeadAttention, ScaledDotProductAttention, SelfAttention, scaled_dot_product_attention
from minilm.nn.dropout import Dropout
from minilm.nn.embedding import Embedding
from minilm.nn.embeddings import Embeddings
from minilm.nn.feedforward import FeedForward
from minilm.nn.linear import Linear
from minilm.nn.loss import CrossEntropyLoss
from minilm.nn.lstm import LSTM
from minilm.nn.module import Module, Parameter, inference
from minilm.nn.normalization import LayerNorm
from minilm.nn.positional import SinusoidalPositionalEncoding
from minilm.nn.rnn import RNN
from minilm.nn.softmax import LogSoftmax, Softmax, log_softmax, softmax
from minilm.nn.transformer import TransformerBlock

__all__ = [
    "Module", "Parameter", "inference",
    "Linear", "Embedding", "Embeddings", "SinusoidalPositionalEncoding", "LayerNorm", "Dropout",
    "GELU", "ReLU", "Tanh", "Softmax", "LogSoftmax", "softmax", "log_softmax", "CrossEntropyLoss",
    "scaled_dot_product_attention", "ScaledDotProductAttention", "SelfAttention", "MultiHeadAttention",
    "FeedForward", "TransformerBlock", "LSTM", "RNN",
]
