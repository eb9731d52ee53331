"""Layers with hand-written forward and backward passes, named and shaped like their ``torch.nn`` twins."""

from minilm.nn.activation import GELU, ReLU
from minilm.nn.dropout import Dropout
from minilm.nn.embedding import Embedding
from minilm.nn.linear import Linear
from minilm.nn.loss import CrossEntropyLoss
from minilm.nn.module import Module, Parameter
from minilm.nn.normalization import LayerNorm
from minilm.nn.positional import SinusoidalPositionalEncoding
from minilm.nn.softmax import LogSoftmax, Softmax, log_softmax, softmax

__all__ = ["Module", "Parameter", "Linear", "Embedding", "SinusoidalPositionalEncoding", "LayerNorm", "GELU", "ReLU", "CrossEntropyLoss", "Dropout", "Softmax", "LogSoftmax", "softmax", "log_softmax"]
