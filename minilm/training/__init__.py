"""Training and sampling: the loop every framework hides, written out.

objectives.py  what a model learns to predict: (inputs, targets) batches (causal LM for a GPT and the history's
               LSTM, RNN and tutorial Transformer, masked LM for a BERT, classification for a fine-tuned BERT)
config.py      TrainConfig (the run), the presets (a run and a model shape) per model type
trainer.py     the Trainer: schedule, clipping, AdamW, evaluation, checkpoints
evaluation.py  loss and metric on a split; run_state.py  what a resume keeps and may change
memory.py      will the run fit, before it starts
counting.py    an n-gram counted in one pass over the train split, not trained
finetune.py    the FineTuner: the Trainer on a labelled task; heads.py  an encoder under a new head
baselines.py   chance, majority and bag-of-words accuracy beside a classifier's
sentences.py   a BERT's mean-pooled sentence vectors and their nearest neighbours
translation.py the seq2seq objective on source/target pairs, exact match and BLEU; translator.py  the Trainer on
               pairs; decoding.py  a Seq2Seq's greedy and beam search
sampling.py    temperature, top-k and top-p sampling over a key/value cache
distributed.py data parallelism under mpiexec: each rank a shard of every batch, the gradients summed over ranks;
               overlap.py  those sums started block by block as the backward goes; zero.py  AdamW's state sharded

May import: minilm.backend, minilm.atomic, minilm.communicator, minilm.nn, minilm.models, minilm.optim,
minilm.data, minilm.files.
"""
