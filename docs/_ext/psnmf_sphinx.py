"""The two local additions of the psnmf documentation build.

``.. psnmf-help:: [SUBCOMMAND]``
    The ``--help`` text of the ``psnmf`` command or of one subcommand. The text comes from
    the parser the command builds (:func:`psnmf.cli.build_parser`), so the CLI reference
    cannot drift from the program. Shown as a terminal shows it, 88 columns wide.

Plain words in docstring types stay plain text
    numpydoc types such as ``ndarray, shape (n_pixels, k)`` are split into words and each
    word becomes a cross-reference. A lower-case word without a dot (``shape``,
    ``spectra``, ``k``) is not a type: Sphinx would link it to whichever attribute of that
    name it finds (``SimulatedDataset.shape``...) and warn when there are several. Such
    words are turned back into text before the references are resolved; class names and
    dotted paths (``PSNMF``, ``psnmf.selection.ModelChoice``) stay links.
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from docutils.parsers.rst import Directive

WIDTH = "88"


def help_text(command: str | None) -> str:
    """``psnmf --help`` or ``psnmf COMMAND --help`` as printed."""
    from psnmf.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        if command is None:
            return parser.format_help()
        for action in parser._actions:  # the subcommands' parsers
            if isinstance(action, argparse._SubParsersAction):
                return action.choices[command].format_help()
        raise ValueError(f"psnmf has no subcommand {command!r}")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


class PsnmfHelp(Directive):
    """Insert the help of ``psnmf`` (no argument) or of one subcommand."""

    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        command = self.arguments[0] if self.arguments else None
        text = help_text(command)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def _is_plain_word(target: str) -> bool:
    return "." not in target and not target[:1].isupper()


def unlink_plain_type_words(app, doctree: nodes.document) -> None:  # noqa: ANN001
    """Replace the cross-references of lower-case, undotted type words by their text."""
    from sphinx import addnodes

    for ref in list(doctree.findall(addnodes.pending_xref)):
        if (ref.get("refdomain") == "py" and ref.get("reftype") in ("class", "obj")
                and ref.get("refspecific") and _is_plain_word(ref.get("reftarget", ""))):
            ref.replace_self(ref.children)


def setup(app):  # noqa: ANN001, ANN201 - Sphinx's extension entry point
    app.add_directive("psnmf-help", PsnmfHelp)
    app.connect("doctree-read", unlink_plain_type_words)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
