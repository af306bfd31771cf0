"""The plugin contract: hooks a ``symadj`` plugin may implement.

Plugins are modules or objects registered under the entry-point group ``symadj``
(``[project.entry-points.symadj]`` in a package's ``pyproject.toml``), whose
functions are marked with :data:`hookimpl` (also ``symadj.hookimpl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._backend import BackendInfo
    from ._bench_case import BenchCaseInfo
    from ._tableau import Tableau

hookspec = pluggy.HookspecMarker("symadj")
hookimpl = pluggy.HookimplMarker("symadj")
"""The marker for a plugin's hook implementations (hooks: ``symadj.hookspecs``).

Examples:
    >>> import symadj
    >>> @symadj.hookimpl
    ... def symadj_register_tableaux():
    ...     return [symadj.Tableau("my_heun3", c=["0", "1/3", "2/3"], a=[[], ["1/3"], ["0", "2/3"]],
    ...                            b=["1/4", "0", "3/4"], order=3)]
    >>> [tableau.name for tableau in symadj_register_tableaux()]
    ['my_heun3']
"""


@hookspec
def symadj_register_tableaux() -> list[Tableau | str | Path]:
    """Contribute Butcher tableaux: :class:`symadj.Tableau` objects or paths of TOML files.

    Files are parsed for their names at registration and verified on first use.
    """


@hookspec
def symadj_register_backends() -> list[BackendInfo]:
    """Contribute array backends, each described by a :class:`symadj.BackendInfo`.

    The description must not import the array library: a backend whose library is
    missing is listed as unavailable with its pip extra.
    """


@hookspec
def symadj_bench_cases() -> list[BenchCaseInfo]:
    """Contribute ``symadj bench`` cases, each a :class:`symadj.bench.cases.BenchCaseInfo`:
    the backend it solves with, the module the benchmark's worker imports, and the peer
    libraries (:class:`symadj.bench.cases.Peer`) it can time on the same problems.

    The description must not import the array library: methods whose library is missing
    are listed as skipped, with their install command.
    """
