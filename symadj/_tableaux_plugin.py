"""The plugin that contributes the tableaux shipped in ``tableaux/``."""

from __future__ import annotations

from pathlib import Path

from .hookspecs import hookimpl


def shipped_tableaux_dir() -> Path:
    """``symadj/tableaux`` in an installed wheel, ``tableaux/`` beside ``symadj/`` in a source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "tableaux", here.parent / "tableaux"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"symadj's tableaux directory is missing (looked beside {here})")


@hookimpl
def symadj_register_tableaux() -> list[Path]:
    return sorted(shipped_tableaux_dir().glob("*.toml"))
