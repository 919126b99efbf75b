"""``python -m psnmf.cli``: the ``psnmf`` command."""

from psnmf.cli import console

console()
