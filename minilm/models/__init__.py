"""Language models assembled from minilm.nn layers, each registered under the model_type its checkpoints name.

May import: minilm.backend, minilm.nn. Imported by everything that builds or loads a model.
"""

from minilm.models.bert import BERT, BERTConfig
from minilm.models.gpt import GPT, GPTConfig
from minilm.models.transformer import Transformer, TransformerConfig
from minilm.models.registry import MODELS, build, expect_type, model_type_of, register, type_of_model

register("gpt", GPTConfig, GPT)
register("bert", BERTConfig, BERT)
# Transformer builds from its config alone, but is not registered yet: `minilm train` offers every registered
# type as --model (minilm/cli/train.py builds the choices from MODELS), and no objective trains this one

__all__ = ["BERT", "BERTConfig", "GPT", "GPTConfig", "MODELS", "build", "expect_type", "model_type_of", "register", "Transformer",
           "TransformerConfig", "type_of_model"]
