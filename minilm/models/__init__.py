"""Language models assembled from minilm.nn layers."""

from minilm.models.gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
