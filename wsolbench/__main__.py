"""``python -m wsolbench`` (what ``torchrun -m wsolbench run ... --launcher pytorch`` starts)."""

import sys

from wsolbench.cli.main import main

sys.exit(main())
