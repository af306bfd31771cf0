"""States made of several arrays (tuples, pytree leaves) seen as one flat array by the engine."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._array_api import is_array
from ._complex import real_dtype
from .errors import InvalidArgumentError


@dataclass(frozen=True)
class StateLayout:
    """How a state's arrays map to and from the one array the engine steps.

    A state that is a single array is kept as it is (``single``); several arrays are
    flattened and concatenated, and must share one floating dtype, real or complex (one
    flat array has one dtype). ``split`` takes a state (or a derivative of one) to its
    arrays, ``rebuild`` the arrays back to a state.

    A backend gets the layout of a solve in :meth:`symadj.Backend.make_field`; its
    :meth:`wrap` turns the user's function into one on flat states.

    Examples:
        >>> import numpy as np
        >>> from symadj.backend import StateLayout
        >>> layout = StateLayout.of(np, [np.zeros(2), np.zeros((1, 2))], list, tuple, single=False)
        >>> layout.sizes, layout.flatten(np, [np.ones(2), np.full((1, 2), 2.0)])
        ((2, 2), array([1., 1., 2., 2.]))
        >>> [leaf.shape for leaf in layout.to_state(np, np.arange(4.0))]
        [(2,), (1, 2)]
    """

    shapes: tuple[tuple[int, ...], ...]
    dtype: Any
    single: bool
    split: Callable[[Any], list[Any]]
    rebuild: Callable[[list[Any]], Any]

    @classmethod
    def of(cls, xp: Any, leaves: Sequence[Any], split: Callable[[Any], list[Any]],
           rebuild: Callable[[list[Any]], Any], single: bool) -> StateLayout:
        """The layout of a state whose arrays are ``leaves`` (from ``split``), checked: arrays
        of one real or complex floating dtype, else :class:`InvalidArgumentError`."""
        for leaf in leaves:
            if not is_array(leaf):
                raise InvalidArgumentError(f"y0 must hold arrays, got {type(leaf).__name__}")
            if not xp.isdtype(leaf.dtype, ("real floating", "complex floating")):
                raise InvalidArgumentError(
                    f"y0: dtype {leaf.dtype} is not a floating dtype; pass a real or complex floating dtype "
                    f"(float32, float64, complex64, complex128)"
                )
        dtypes = {str(leaf.dtype) for leaf in leaves}
        if len(dtypes) > 1:
            kinds = {xp.isdtype(leaf.dtype, "complex floating") for leaf in leaves}
            fix = "cast the real ones to the complex dtype (a real entry is a complex one with zero " \
                  "imaginary part)" if len(kinds) > 1 else "cast them to a common floating dtype"
            raise InvalidArgumentError(f"y0: the arrays of a state must share one dtype, got {sorted(dtypes)}; {fix}")
        return cls(tuple(tuple(leaf.shape) for leaf in leaves), leaves[0].dtype, single, split, rebuild)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    def flatten(self, xp: Any, leaves: Sequence[Any]) -> Any:
        if self.single:
            return leaves[0]
        return xp.concat([xp.reshape(leaf, (-1,)) for leaf in leaves])

    def unflatten(self, xp: Any, flat: Any, batch: tuple[int, ...] = ()) -> list[Any]:
        """Split ``flat`` (with leading ``batch`` axes) back into arrays of the original shapes."""
        if self.single:
            return [flat]
        leaves, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            leaves.append(xp.reshape(flat[..., start : start + size], (*batch, *shape)))
            start += size
        return leaves

    def to_state(self, xp: Any, flat: Any, batch: tuple[int, ...] = ()) -> Any:
        """The user-facing state (the structure of ``y0``) of a flat array."""
        return self.rebuild(self.unflatten(xp, flat, batch))

    def wrap(self, xp: Any, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """Turn ``func(t, state) -> derivative`` into ``f(t, flat) -> flat``, checking what it returns."""

        time_dtype = real_dtype(xp, self.dtype)

        def flat_func(t: Any, flat: Any) -> Any:
            # func gets t in the state's (real) dtype: float64 stage times must not promote a float32 state.
            if is_array(t) and t.dtype != time_dtype:
                t = xp.astype(t, time_dtype)
            out = self.split(func(t, self.to_state(xp, flat)))
            if len(out) != len(self.shapes):
                raise InvalidArgumentError(
                    f"func returned {len(out)} arrays for a state of {len(self.shapes)}; "
                    f"return dy/dt with the structure of y"
                )
            for index, (leaf, shape) in enumerate(zip(out, self.shapes)):
                where = "" if self.single else f" (state entry {index})"
                if not is_array(leaf):
                    raise InvalidArgumentError(
                        f"func returned a {type(leaf).__name__}{where}, expected an array like y"
                    )
                if tuple(leaf.shape) != shape:
                    raise InvalidArgumentError(
                        f"func returned shape {tuple(leaf.shape)}{where}, expected {shape}: "
                        f"dy/dt must have the shape of y"
                    )
                if leaf.dtype != self.dtype:
                    raise InvalidArgumentError(
                        f"func returned dtype {leaf.dtype}{where}, expected {self.dtype} (the dtype "
                        f"of y0): keep dy/dt in the state's dtype"
                    )
            return self.flatten(xp, out)

        return flat_func


def call_with_args(func: Callable[..., Any], args: Any) -> Callable[[Any, Any], Any]:
    """``func(t, y)``, or ``func(t, y, args)`` when ``args`` is given (the JAX convention).

    Examples:
        >>> from symadj.backend import call_with_args
        >>> call_with_args(lambda t, y, k: -k * y, 3.0)(0.0, 2.0)
        -6.0
    """
    if args is None:
        return func
    return lambda t, y: func(t, y, args)
