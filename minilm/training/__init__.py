"""Training and sampling: the loop every framework hides, written out.

objectives.py  what a model learns to predict: (inputs, targets) batches (causal LM now)
trainer.py     TrainConfig, the presets and the Trainer: schedule, clipping, AdamW, checkpoints
run_state.py   what a resume keeps and may change; memory.py  will the run fit, before it starts
sampling.py    temperature, top-k and top-p sampling over a key/value cache

May import: minilm.backend, minilm.atomic, minilm.nn, minilm.models, minilm.optim, minilm.data, minilm.files.
"""
