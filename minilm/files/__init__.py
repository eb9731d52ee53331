"""Files: what a user saves and shares, written so that nothing saved is ever lost.

checkpoint.py  a checkpoint folder: safetensors + JSON, a SHA-256 manifest, atomic replacement
hf_folder.py   a Hugging Face model folder's files: config.json, safetensors (never pickles), atomic export
hf.py          GPT-2 in the Hugging Face layout: import and export
hf_bert.py     BERT in the Hugging Face layout (BertForMaskedLM, ...SequenceClassification, BertModel)
hf_bert_config.py  its config.json and minilm's BERTConfig, each read from the other (head, labels, refusals)
loader.py      a checkpoint back to (model, tokenizer) through the model registry (minilm.load)

Writes go through minilm.atomic (temp + fsync + rename, and refuse_to_replace, the one --overwrite rule).
May import: minilm.backend, minilm.atomic, minilm.nn, minilm.models, minilm.data. Imported by training, cli and viz.
"""
