"""What a backend plugin builds on: the contract, its eager base, buffers, fields and the state layout.

A backend imports from here (and from :mod:`symadj`), never from a private
``symadj._*`` module. See docs/plugins.md for the contract method by method and a
backend written against it.

Examples:
    >>> import numpy as np
    >>> from symadj.backend import StateLayout, call_with_args
    >>> layout = StateLayout.of(np, [np.zeros(2), np.zeros(3)], list, tuple, single=False)
    >>> flat = call_with_args(lambda t, y, k: tuple(-k * part for part in y), 2.0)
    >>> layout.wrap(np, flat)(0.0, np.ones(5))
    array([-2., -2., -2., -2., -2.])
"""

from ._backend import (
    STACKED_ENTRY_SIZE,
    Backend,
    BackendInfo,
    Buffer,
    EagerBackend,
    Field,
    ForwardField,
    GraphMeter,
    ListBuffer,
    StackedBuffer,
)
from ._state import StateLayout, call_with_args

__all__ = [
    "STACKED_ENTRY_SIZE", "Backend", "BackendInfo", "Buffer", "EagerBackend", "Field", "ForwardField", "GraphMeter",
    "ListBuffer",
    "StackedBuffer", "StateLayout", "call_with_args",
]
