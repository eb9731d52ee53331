"""What a model is trained to predict: an objective turns a split's token ids into (inputs, targets) batches.

clm  causal language modelling (GPT): windows w (B, T + 1) of consecutive tokens,
         inputs x = w[:, :T],   targets y = w[:, 1:]        y[b, t] is the token after x[b, t]
         loss = CE(model(x), y), the mean over the B·T next-token predictions
The trainer runs any objective the same way: logits = model(*inputs); loss = CE(logits, targets);
model.backward(CE.backward()). Masked language modelling (BERT), classification and sequence-to-sequence
objectives come with their model families; each names the model types it can train.
"""

from minilm.data import next_token_pairs, random_windows, sequential_windows


class CausalLM:
    """Next-token prediction over random windows of a token stream (nanoGPT's get_batch)."""

    name = "clm"
    model_types = ("gpt",)

    def batch(self, data, batch_size, block_size, rng):
        """((x,), y) for one training step: B random windows of T + 1 tokens, split into inputs and targets."""
        x, y = next_token_pairs(random_windows(data, batch_size, block_size + 1, rng))  # (B, T) each
        return (x,), y

    def every_batch(self, data, batch_size, block_size):
        """((x,), y) batches covering the whole split once, in order: for a loss without sampling noise."""
        for windows in sequential_windows(data, batch_size, block_size + 1):
            x, y = next_token_pairs(windows)  # (≤ B, T) each
            yield (x,), y


OBJECTIVES = {"clm": CausalLM}
