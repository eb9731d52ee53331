"""The twin of minilm.verify.check_recurrent.RecurrentOutputs: torch.nn.LSTM or torch.nn.RNN(batch_first=True)
itself, under the child name ``layer``, run from the given state and returning its output sequence alone."""

import torch


class RecurrentOutputsTwin(torch.nn.Module):
    def __init__(self, outputs):
        super().__init__()
        layer = outputs.layer
        if type(layer).__name__ == "LSTM":
            self.layer = torch.nn.LSTM(layer.input_size, layer.hidden_size, layer.num_layers, bias=layer.bias,
                                       batch_first=True)
        else:
            self.layer = torch.nn.RNN(layer.input_size, layer.hidden_size, layer.num_layers,
                                      nonlinearity=layer.nonlinearity, bias=layer.bias, batch_first=True)

    def forward(self, x, h0, c0=None):
        return self.layer(x, h0 if c0 is None else (h0, c0))[0]
