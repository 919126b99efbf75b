"""``python -m psnmf.cli``: the ``psnmf`` command."""

import sys

from psnmf.cli import main

sys.exit(main())
