"""Verification: is every hand-written backward the derivative of its forward, and does it match PyTorch?

gradcheck.py    central differences in float64 and the relative error (check_module)
tolerances.py   every tolerance, with its reason: one table for the tests and `minilm check`
reference/      the PyTorch twins of every layer and model: the only place minilm imports torch, lazily
check_items.py  the rows of `minilm check` (ITEMS): the layers' here, the models' in check_models.py, the LSTM's
                and RNN's in check_recurrent.py, what a row is in check_cases.py, its formula read from the
                docstring by check_formula.py
check_table.py  its table;  check.py  the command itself

May import: minilm.backend, minilm.nn, minilm.models, minilm.optim (and torch, in reference/ only).
"""
