"""Layers with hand-written forward and backward passes, named and shaped like their ``torch.nn`` twins."""

from minilm.nn.linear import Linear
from minilm.nn.module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear"]
