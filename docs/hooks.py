"""MkDocs hook: Sphinx roles in docstrings (:func:`solve`, :class:`~symadj.Tableau`) become links.

The docstrings use reST-style roles, which Markdown renders as ``:func:<code>solve</code>``.
Each becomes an optional cross-reference for mkdocs-autorefs: a link where the target is
documented (bare names are looked up in ``symadj``), plain code where it is not.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|exc|obj):<code>(~?)([\w.]+)</code>")


def _autoref(match: re.Match) -> str:
    short, name = match.group(1), match.group(2)
    identifier = name if name.startswith("symadj.") else f"symadj.{name}"
    shown = name.rsplit(".", 1)[-1] if short else name
    return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'


def on_page_content(html: str, **kwargs: object) -> str:
    return _ROLE.sub(_autoref, html)
