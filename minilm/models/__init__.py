"""Language models assembled from minilm.nn layers, each registered under the model_type its checkpoints name.

May import: minilm.backend, minilm.nn. Imported by everything that builds or loads a model.
"""

from minilm.models.bert import BERT, BERTConfig
from minilm.models.gpt import GPT, GPTConfig
from minilm.models.registry import MODELS, build, expect_type, model_type_of, register, type_of_model

register("gpt", GPTConfig, GPT)
register("bert", BERTConfig, BERT)

__all__ = ["BERT", "BERTConfig", "GPT", "GPTConfig", "MODELS", "build", "expect_type", "model_type_of", "register", "type_of_model"]
