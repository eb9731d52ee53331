"""``python -m minilm.cli``: the same as the ``minilm`` command."""

import sys

from minilm.cli import main

sys.exit(main())
