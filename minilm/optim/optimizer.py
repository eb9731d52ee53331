"""Optimizer: what SGD, Adam and AdamW share — parameter groups, per-parameter state, step(), checkpoints.

groups:   the parameters are held in groups, as in torch: each group is a dict with "params" (a list of
          Parameters) and its own hyper-parameters ("lr", "weight_decay", ...), defaulting to the optimizer's.
          A group's "lr" may be set between steps; that is how a schedule drives training (schedule.py).
          ``decay_groups`` builds nanoGPT's two groups: matrices decay, vectors (biases, LayerNorm) do not.
step():   for every parameter whose grad is not None, in group order, the subclass's ``update`` changes
          ``param.data`` and that parameter's state in place. A parameter whose grad is None is skipped and
          its state left untouched, as in torch (its step count t does not advance either).
state:    per parameter, keyed by its position across the groups (0, 1, ...): a dict of arrays (moments, in
          the parameter's dtype and shape) and Python numbers (the step count t).
checkpoint: ``state_dict()`` -> (arrays, meta). arrays: "<position>.<name>" -> a copy of each state array
          ("0.exp_avg"); meta: JSON-able — the optimizer's type, each group's hyper-parameters and parameter
          count, and each parameter's numbers ({"0": {"step": 5}}). ``load_state_dict(arrays, meta)`` checks
          all of it against this optimizer before changing anything. Parameters are identified by position.
ref:      torch.optim.Optimizer
"""

import numbers

from minilm.backend import asarray
from minilm.nn.module import Parameter


class Optimizer:
    """Base class. Subclasses set ``state_arrays``/``state_numbers`` and write ``check`` and ``update``."""

    state_arrays = ()  # names of the per-parameter state arrays, e.g. ("exp_avg", "exp_avg_sq")
    state_numbers = ()  # names of the per-parameter Python numbers, e.g. ("step",)

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.check(self.defaults, where="")
        self.param_groups = _build_groups(params, self.defaults, self.check)
        self.state = {}  # position -> {name: array or number}; filled by update() on a parameter's first step

    def check(self, group, where):
        """Raise ValueError naming the bad hyper-parameter of ``group``; ``where`` prefixes the message."""
        raise NotImplementedError

    def update(self, param, grad, state, group):
        """Change ``param.data`` and ``state`` in place by one step of the rule, given ``grad``."""
        raise NotImplementedError

    def _positions(self):
        """(position, Parameter, its group) for every parameter, in group order."""
        position = 0
        for group in self.param_groups:
            for param in group["params"]:
                yield position, param, group
                position += 1

    def step(self):
        for position, param, group in self._positions():
            if param.grad is None:
                continue
            self.update(param, param.grad, self.state.setdefault(position, {}), group)

    def zero_grad(self):
        """Forget every gradient (``grad = None``), as torch does by default."""
        for _, param, _ in self._positions():
            param.grad = None

    def state_dict(self):
        """(arrays, meta): copies of the state arrays by "<position>.<name>", and a JSON-able dict of the rest.

        The arrays are copies, so training may go on while a checkpoint writer still holds them.
        """
        arrays, numbers_by_position = {}, {}
        for position, entry in sorted(self.state.items()):
            for name in self.state_arrays:
                if name in entry:
                    arrays[f"{position}.{name}"] = entry[name].copy()
            found = {name: _plain(entry[name]) for name in self.state_numbers if name in entry}
            if found:
                numbers_by_position[str(position)] = found
        groups = [
            {**{key: _plain(value) for key, value in group.items() if key != "params"},
             "num_params": len(group["params"])}
            for group in self.param_groups
        ]
        meta = {"optimizer": type(self).__name__, "groups": groups, "state": numbers_by_position}
        return arrays, meta

    def load_state_dict(self, arrays, meta):
        """Restore what ``state_dict`` returned (arrays may be NumPy or the active backend's), checking it first."""
        ours = type(self).__name__
        if meta.get("optimizer") != ours:
            raise ValueError(f"optimizer state was saved by {meta.get('optimizer')!r}, cannot load it into {ours}")
        saved_groups = meta.get("groups", [])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(saved_groups)} parameter groups, this {ours} has "
                             f"{len(self.param_groups)}")
        for k, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if saved.get("num_params") != len(group["params"]):
                raise ValueError(f"parameter group {k}: optimizer state has {saved.get('num_params')} parameters, "
                                 f"this {ours} has {len(group['params'])}")
            unknown = sorted(set(saved) - set(self.defaults) - {"num_params"})
            if unknown:
                raise ValueError(f"parameter group {k}: unknown option(s) {', '.join(unknown)} in optimizer state")
        hypers = [{key: _from_plain(key, saved[key]) for key in self.defaults if key in saved}
                  for saved in saved_groups]
        for k, hyper in enumerate(hypers):
            self.check({**self.param_groups[k], **hyper}, where=f"parameter group {k} of the optimizer state: ")
        state = self._state_from(arrays, meta.get("state", {}))
        for group, hyper in zip(self.param_groups, hypers):
            group.update(hyper)
        self.state = state

    def _state_from(self, arrays, numbers_by_position):
        """The state dict that ``arrays`` and ``numbers_by_position`` describe, or ValueError listing every problem."""
        params = {position: param for position, param, _ in self._positions()}
        state, problems = {}, []
        for key, value in arrays.items():
            position, _, name = key.partition(".")
            if not position.isdigit() or int(position) not in params or name not in self.state_arrays:
                problems.append(f"unexpected array {key}")
                continue
            param = params[int(position)]
            if tuple(value.shape) != tuple(param.shape):
                problems.append(f"{key}: expected shape {tuple(param.shape)}, got {tuple(value.shape)}")
                continue
            state.setdefault(int(position), {})[name] = asarray(value, dtype=param.data.dtype).copy()
        for position, found in numbers_by_position.items():
            if not position.isdigit() or int(position) not in params:
                problems.append(f"unexpected state for parameter {position}")
                continue
            for name, value in found.items():
                if name not in self.state_numbers:
                    problems.append(f"unexpected state number {position}.{name}")
                else:
                    state.setdefault(int(position), {})[name] = value
        for position, entry in state.items():
            missing = [f"{position}.{name}" for name in self.state_arrays + self.state_numbers if name not in entry]
            if missing:
                problems.append(f"missing {', '.join(missing)}")
        if problems:
            raise ValueError(f"cannot load optimizer state into {type(self).__name__}: " + " | ".join(problems))
        return state


def decay_groups(named_parameters, weight_decay):
    """nanoGPT's two groups: parameters with ndim >= 2 (matrices, embeddings) decay; the rest do not.

    Decay pulls weights towards 0; for a bias or a LayerNorm gain (ndim 1) that is no regulariser, only a
    bias towards a worse function. ``named_parameters`` is (name, Parameter) pairs or a Module.
    Returns [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}].
    """
    if hasattr(named_parameters, "named_parameters"):
        named_parameters = named_parameters.named_parameters()
    decay, no_decay = [], []
    for item in named_parameters:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Parameter)):
            raise TypeError(f"decay_groups expects (name, Parameter) pairs, got {item!r}")
        (decay if item[1].data.ndim >= 2 else no_decay).append(item[1])
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def check_at_least(name, value, low, where):
    """ValueError unless ``value`` is a real number >= ``low``; the message names the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= low:
        raise ValueError(f"{where}invalid {name} {value!r}: must be a number >= {low}")


def _build_groups(params, defaults, check):
    """The list of group dicts, each complete with the defaults, checked; or a clear error."""
    if isinstance(params, (Parameter, dict)) or not hasattr(params, "__iter__"):
        raise TypeError(f"params must be a list of Parameters or of group dicts, got {type(params).__name__}")
    items = list(params)
    explicit = bool(items) and all(isinstance(item, dict) for item in items)
    raw_groups = items if explicit else [{"params": items}]
    groups, seen = [], set()
    for k, raw in enumerate(raw_groups):
        where = f"parameter group {k}: " if explicit else ""
        if not isinstance(raw, dict):
            raise TypeError(f"params mixes group dicts with other items: item {k} is a {type(raw).__name__}")
        if "params" not in raw:
            raise ValueError(f"{where}missing the 'params' key")
        unknown = sorted(set(raw) - set(defaults) - {"params"})
        if unknown:
            raise ValueError(f"{where}unknown option(s) {', '.join(unknown)}; expected {', '.join(defaults)}")
        group_params = [raw["params"]] if isinstance(raw["params"], Parameter) else list(raw["params"])
        for param in group_params:
            if not isinstance(param, Parameter):
                raise TypeError(f"{where}expected minilm.nn.Parameter, got {type(param).__name__}")
            if id(param) in seen:
                raise ValueError(f"{where}{param!r} appears more than once in the parameter list")
            seen.add(id(param))
        group = {**defaults, **raw, "params": group_params}
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        check(group, where)
        groups.append(group)
    if not seen:
        raise ValueError("optimizer got an empty parameter list")
    return groups


def _plain(value):
    """A hyper-parameter or state number as a JSON-able Python value (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _from_plain(key, value):
    return tuple(value) if key == "betas" else value
