"""The model registry: a checkpoint's config.json names its model_type, and this maps the name to code.

    MODELS[model_type] = (config dataclass, model class)       "gpt" -> (GPTConfig, GPT)
    config.json: {"model_type": "gpt", "model": {GPTConfig's fields}, "train": {...}}

A checkpoint written before model types existed has no model_type: it is a GPT. Every command that reads a
checkpoint says which types it can use (``expect_type``), so a BERT handed to `minilm sample` is refused by
name instead of failing somewhere inside a GPT's forward.
"""

MODELS = {}  # model_type -> (config class, model class)
DEFAULT_TYPE = "gpt"  # what a config.json without model_type holds (every checkpoint before the registry)


def register(model_type, config_class, model_class):
    """Make ``model_type`` buildable: config.json's "model" section is ``config_class``'s fields."""
    if model_type in MODELS and MODELS[model_type] != (config_class, model_class):
        raise ValueError(f"model_type {model_type!r} is already registered to {MODELS[model_type][1].__name__}")
    MODELS[model_type] = (config_class, model_class)


def model_type_of(config):
    """The model_type named by a config.json dict (DEFAULT_TYPE when it names none)."""
    model_type = config.get("model_type", DEFAULT_TYPE)
    if model_type not in MODELS:
        raise ValueError(f"config.json names model_type {model_type!r}, which minilm does not know "
                         f"(known: {', '.join(sorted(MODELS))})")
    return model_type


def type_of_model(model):
    """The registered model_type of a model instance (what a checkpoint of it records)."""
    for model_type, (_, model_class) in MODELS.items():
        if type(model) is model_class:
            return model_type
    raise ValueError(f"{type(model).__name__} is not a registered model type")


def expect_type(config, allowed, where, user):
    """ValueError naming both types when the checkpoint's model_type is not one ``user`` (a command) can use."""
    model_type = model_type_of(config)
    if model_type not in allowed:
        raise ValueError(f"{user} needs a model of type {' or '.join(allowed)}, but {where} holds a {model_type} "
                         f"model (its config.json's model_type)")
    return model_type


def config_from_fields(config_class, fields, folder, family):
    """``config_class(**fields)`` from a checkpoint's config.json "model" section; ValueError naming the file and
    what cannot be part of a ``family`` config (an unknown field, or a value of the wrong type or range)."""
    if not isinstance(fields, dict):
        raise ValueError(f"checkpoint config.json in {folder} has no 'model' section")
    try:
        return config_class(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint config.json in {folder} is not a {family} config: {err}") from None


def build(config, where, rng=None):
    """The (untrained) model a config.json dict describes, and its config dataclass."""
    config_class, model_class = MODELS[model_type_of(config)]
    model_config = config_class.from_checkpoint(config.get("model"), where)
    return model_class(model_config, rng=rng), model_config
