"""Language models assembled from minilm.nn layers, each registered under the model_type its checkpoints name.

May import: minilm.backend, minilm.nn. Imported by everything that builds or loads a model.
"""

from minilm.models.bert import BERT, BERTConfig
from minilm.models.gpt import GPT, GPTConfig
from minilm.models.lstm import LSTMLM, RNNLM, LSTMConfig, RNNConfig
from minilm.models.ngram import NGram, NGramConfig
from minilm.models.seq2seq import Seq2Seq, Seq2SeqCache, Seq2SeqConfig
from minilm.models.transformer import Transformer, TransformerConfig
from minilm.models.tutorial import TutorialConfig, TutorialTransformer
from minilm.models.registry import MODELS, build, expect_type, model_type_of, register, type_of_model

register("gpt", GPTConfig, GPT)
register("bert", BERTConfig, BERT)
register("seq2seq", Seq2SeqConfig, Seq2Seq)
register("lstm", LSTMConfig, LSTMLM)
register("rnn", RNNConfig, RNNLM)
register("tutorial", TutorialConfig, TutorialTransformer)
register("ngram", NGramConfig, NGram)  # counted (NGram.fit), not trained: no objective trains it
# Transformer (embedded inputs, no vocabulary) is not registered: Seq2Seq is the model built on it that a
# checkpoint holds

__all__ = ["BERT", "BERTConfig", "GPT", "GPTConfig", "LSTMLM", "LSTMConfig", "RNNLM", "RNNConfig", "NGram", "NGramConfig",
           "TutorialConfig",
           "TutorialTransformer", "MODELS", "build", "expect_type", "model_type_of", "register", "Seq2Seq",
           "Seq2SeqCache", "Seq2SeqConfig", "Transformer",
           "TransformerConfig", "type_of_model"]
