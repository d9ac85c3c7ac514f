"""``python -m softmax_xp`` runs the ``softmax-xp`` command."""

import sys

from ._cli import main

sys.exit(main())
