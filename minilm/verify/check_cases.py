"""What one row of `minilm check` is (Item), what it builds (Case, OptimizerCase), and the inputs it builds from.

Each Item builds a fresh module and its inputs from a seed, so the finite-difference run (float64) and the
PyTorch run (the requested dtype) see the same numbers, and a test can plant a wrong backward in a class
(monkeypatch LayerNorm.backward) and watch exactly the rows built on that class fail.

Shapes: every size differs (B ≠ T ≠ C ≠ H ≠ hs; a square shape hides a transposed gradient), values are of
unit scale, and a parameter the constructor leaves constant (LayerNorm's ones and zeros, zero biases) gets a
random offset, since a backward that forgets w or b is invisible at w = 1, b = 0.
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from minilm.backend import asarray, to_numpy
from minilm.nn.module import Module


@dataclass
class Case:
    """One module and the inputs it is checked on; kwargs go to forward (masks)."""

    module: Module
    inputs: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class OptimizerCase:
    """Parameter shapes and the gradients of ``steps`` steps; ``make(params)`` builds the optimiser."""

    make: Callable
    torch_name: str
    hyper: dict
    shapes: list
    steps: int = 3  # step 1 alone never uses the momentum or the bias correction's t > 1


@dataclass(frozen=True)
class Item:
    name: str  # the row's name
    layer: str  # the class checked: what `minilm check LAYER` selects, case-insensitively
    owner: type  # the class whose module docstring holds the formula
    build: Callable  # numpy Generator -> Case (or OptimizerCase)
    anchor: str = "forward:"  # where the formula starts in that docstring
    pick: tuple = None  # indices of the formula pieces to keep; None keeps all
    fd: str = "smooth"  # the tolerances.GRADCHECK entry; None: no finite differences (optimisers)
    h: float = 1e-5  # the central-difference step (gradcheck's default)
    max_coords: int = None  # difference this many coordinates per array, stratified (None: all)
    torch: str = None  # None: compare with the PyTorch twin; otherwise why there is no comparison


def randn(rng, *shape, scale=1.0):
    return asarray(rng.standard_normal(shape) * scale)  # float64 on the active backend


def vary_constants(module, rng, scale=0.1):
    """Give every parameter that is constant at init (ones, zeros) a random offset of ``scale``."""
    for _, param in module.named_parameters():
        data = np.asarray(to_numpy(param.data), dtype=np.float64)
        if data.size and np.all(data == data.flat[0]):
            param.data = asarray(data + scale * rng.standard_normal(data.shape), dtype=param.data.dtype)
    return module


def padding(b, t):
    """bool (b, t), True = padded: the last sequence's second half. Key 0 stays visible to every query."""
    padded = np.zeros((b, t), dtype=bool)
    padded[-1, t // 2 + 1:] = True
    return asarray(padded)
