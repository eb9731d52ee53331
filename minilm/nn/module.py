"""Parameter and Module: the contract every layer follows.

A ``Parameter`` is a pair, ``data`` and ``grad``, as in micrograd. A ``Module`` computes ``forward`` and keeps
in named attributes exactly what ``backward`` needs (the CS231n "cache"); ``backward(dout)`` returns the
gradient with respect to the forward's floating-point inputs (one array, a tuple when there are several,
None when there are none) and *adds* into each ``Parameter.grad``, so a weight used twice (a tied
embedding) collects the sum of both gradients.

Names follow ``torch.nn``: submodules are attributes, a list of modules indexes like ``torch.nn.ModuleList``
(``h.0.attn.out_proj.weight``), so a state dict copies across to the PyTorch twin by name. An attribute
whose name starts with "_" is private: a module it holds is not a child (no name, no state dict entry).

Inference: each layer names in ``kept`` the attributes its forward keeps for backward. Inside ``with
inference():`` a module drops them as soon as its forward returns, so a forward pass holds one layer's
activations at a time instead of every layer's (sampling, embedding, long contexts); a backward after it
raises a RuntimeError naming what was not kept. Use it with the model in eval mode.
"""

import contextlib
from collections import OrderedDict

import numpy as np

from minilm.backend import asarray


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape, or None before the first backward)."""

    def __init__(self, data):
        self.data = data
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    def accumulate(self, dparam):
        """``grad += dparam``, allocating ``grad`` on first use. ``dparam`` must be a fresh array: it may be kept."""
        if dparam.shape != self.data.shape:
            raise ValueError(f"gradient of shape {dparam.shape} for a parameter of shape {self.data.shape}")
        if self.grad is None:
            self.grad = dparam.astype(self.data.dtype, copy=False)
        else:
            self.grad += dparam

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


_inference = {"on": False}


@contextlib.contextmanager
def inference():
    """Forward passes inside keep nothing for backward (see the module docstring); nests, and restores."""
    before, _inference["on"] = _inference["on"], True
    try:
        yield
    finally:
        _inference["on"] = before


def in_inference():
    """True inside ``with inference():``."""
    return _inference["on"]


class NotKeptError(RuntimeError, AttributeError):
    """A backward reached for a cache its forward did not keep. An AttributeError too, so hasattr() stays False."""


class Module:
    """Base class: parameter bookkeeping, train/eval, dtype casts. Subclasses write forward and backward."""

    training = True
    kept = ()  # the attributes forward keeps for backward (the cache), dropped under inference()

    def forward(self, *inputs):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __call__(self, *inputs, **kwargs):
        out = self.forward(*inputs, **kwargs)
        if _inference["on"]:
            for name in self.kept:
                self.__dict__.pop(name, None)
        return out

    def __getattr__(self, name):  # only reached when the attribute is missing
        if name in type(self).kept:
            raise NotKeptError(f"{type(self).__name__}.backward needs {name!r}, which its last forward did not "
                               f"keep: it ran under minilm.nn.inference() (or never ran); run forward outside it")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _children(self):
        """(name, Parameter | Module) for every public attribute that holds one, in definition order."""
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (Parameter, Module)):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                for i, child in enumerate(value):
                    yield f"{name}.{i}", child

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every submodule; this module's name is ``prefix``."""
        yield prefix, self
        for name, child in self._children():
            if isinstance(child, Module):
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def _named_parameters_all(self, prefix=""):
        for name, child in self._children():
            full = f"{prefix}{name}"
            if isinstance(child, Parameter):
                yield full, child
            else:
                yield from child._named_parameters_all(full + ".")

    def named_parameters(self):
        """(dotted name, Parameter), each parameter once: a tied weight is listed under its first name."""
        seen = set()
        for name, param in self._named_parameters_all():
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def parameters(self):
        return [param for _, param in self.named_parameters()]

    def num_params(self):
        return sum(int(param.data.size) for param in self.parameters())

    def zero_grad(self):
        """Forget every gradient (``grad = None``), as ``torch`` does by default."""
        for param in self.parameters():
            param.grad = None

    def state_dict(self):
        """Dotted name -> array, every name included (a tied weight appears under each of its names)."""
        return OrderedDict((name, param.data) for name, param in self._named_parameters_all())

    def load_state_dict(self, state, strict=True):
        """Copy arrays (NumPy or the active backend) into the parameters, checking names and shapes.

        strict: every key must match a parameter and every parameter must have a key. Shape mismatches are
        always errors. The arrays are cast to each parameter's dtype and moved to the active backend.
        """
        own = OrderedDict(self._named_parameters_all())
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in own]
        mis_shaped = [
            f"{name}: expected {tuple(own[name].shape)}, got {tuple(state[name].shape)}"
            for name in own
            if name in state and tuple(state[name].shape) != tuple(own[name].shape)
        ]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if mis_shaped:
            problems.append(f"shape mismatch: {'; '.join(mis_shaped)}")
        if problems:
            raise ValueError(f"cannot load state dict into {type(self).__name__}: " + " | ".join(problems))
        for name, param in own.items():
            if name in state:
                param.data = asarray(state[name], dtype=param.data.dtype).copy()
        return self

    def train(self, mode=True):
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Cast every parameter (and gradient) to ``dtype`` in place; tied parameters stay tied."""
        dtype = np.dtype(dtype)
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            if param.grad is not None:
                param.grad = param.grad.astype(dtype)
        return self

    def __repr__(self):
        params = ", ".join(f"{name}={tuple(p.shape)}" for name, p in self.named_parameters())
        return f"{type(self).__name__}({params})"


def init_normal(rng, shape, std, dtype=np.float32):
    """A parameter array drawn from N(0, std²) by a NumPy Generator on the host, then moved to the backend.

    Drawing on the host makes a model built from the same seed identical on the CPU and on the GPU backend.
    """
    return asarray((rng.standard_normal(shape) * std).astype(dtype))


def init_uniform(rng, shape, bound, dtype=np.float32):
    """A parameter array drawn from U(-bound, bound) on the host (torch's default for Linear), then moved."""
    return asarray(rng.uniform(-bound, bound, size=shape).astype(dtype))


def host_rng(seed=None):
    """A NumPy Generator on the host, for initialisation and dropout: from a seed (an int or None), or an
    existing NumPy Generator, passed through. Host state is what a checkpoint can save as JSON."""
    if isinstance(seed, np.random.Generator):
        return seed
    try:
        return np.random.default_rng(seed)
    except TypeError:
        raise TypeError(f"rng must be a seed (an int or None) or a numpy.random.Generator, "
                        f"got {type(seed).__module__}.{type(seed).__name__}") from None

