"""Subcommands of the ``psnmf`` command line, one module each (see :mod:`psnmf.cli`)."""
