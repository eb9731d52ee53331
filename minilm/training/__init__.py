"""Training and sampling: the loop every framework hides, written out.

objectives.py  what a model learns to predict: (inputs, targets) batches (causal LM now)
config.py      TrainConfig (the run), the presets (a run and a model shape)
trainer.py     the Trainer: schedule, clipping, AdamW, evaluation, checkpoints
run_state.py   what a resume keeps and may change; memory.py  will the run fit, before it starts
sampling.py    temperature, top-k and top-p sampling over a key/value cache

May import: minilm.backend, minilm.atomic, minilm.nn, minilm.models, minilm.optim, minilm.data, minilm.files.
"""
