"""The benchmark problems (:mod:`symadj.bench.problems`) in JAX, solved by symadj's JAX backend
or by diffrax, jitted.

The evaluations of the vector field are counted by a second program whose field calls
``jax.debug.callback`` (evaluations inside a compiled loop cannot be counted otherwise);
time is taken on the program without it, since a host call per evaluation costs more than
a small network's evaluation (the ``timeseries`` problem's 2 × 64 field: about 60 µs a
call, several times the evaluation), which would charge each method for its evaluation
count twice. ``--quick`` compiles one program and times it, counter included.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from symadj.bench.methods import Method
from symadj.bench.problems import LIBRARY_DEFAULTS, ProblemSpec, gradient_vector, loss_of, problem_arrays, vector_field


def make_field(spec: ProblemSpec, probe: Any, on_call: Any = None) -> Any:
    """The vector field ``f(t, y, params)``; ``on_call`` (a host function) runs at every call."""

    def field(t: Any, y: Any, params: list[tuple[Any, Any]]) -> Any:
        if on_call is not None:
            jax.debug.callback(on_call)
        return vector_field(jnp, spec, t, y, params, probe)

    return field


def _diffrax_adjoint(mode: str) -> Any:
    """diffrax's adjoint class named ``mode``, or symadj's (``"SymplecticAdjoint"``: the row
    "diffrax + symadj adjoint"), each with its defaults, as a user would pass it."""
    import diffrax

    if mode == "SymplecticAdjoint":
        from .diffrax_adjoint import SymplecticAdjoint

        return SymplecticAdjoint()
    return getattr(diffrax, mode)()


def configure(threads: int, dtype: str) -> None:
    """Set up the worker process: float64 needs JAX's x64 mode (threads are set by XLA_FLAGS)."""
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)


class _Counter:
    """Evaluations of the field, counted by the host callback of a compiled program."""

    def __init__(self) -> None:
        self.calls = 0

    def bump(self) -> None:
        self.calls += 1


# Compiled programs by what their trace depends on: the points of a sweep over the
# integration length (times and targets are arguments) share one, so a worker running a
# sweep compiles each method once.
_PROGRAMS: dict[tuple, tuple[Any, Any, _Counter, float]] = {}


# The max_steps each problem gets, once fitted (see fit_max_steps).
_BOUNDS: dict[ProblemSpec, int] = {}


def _trace_key(spec: ProblemSpec) -> ProblemSpec:
    """What a compiled program depends on: not the integration length or the weights' gain
    (times, weights and targets are its arguments; the cnf probe depends on seed and batch)."""
    return spec.replace(end=1.0, gain=1.0)


def fit_max_steps(specs: list[ProblemSpec], dtype: str = "float32") -> dict[ProblemSpec, int]:
    """The bound every JAX method gets on each problem, from a forward solve: 1.5 times its
    steps, plus 8. Backprop and diffrax's DirectAdjoint allocate for max_steps, not for
    the steps taken, so a shared bound keeps the comparison fair. Problems that would share
    a compiled program (a sweep over the integration length) share the largest bound."""
    largest: dict[ProblemSpec, int] = {}
    for spec in specs:
        arrays = problem_arrays(spec, lambda a: jnp.asarray(a, dtype=jnp.dtype(dtype)))
        steps = _forward_steps(_trace_key(spec), dtype)(arrays.y0, arrays.params, arrays.times)
        key = _trace_key(spec)
        largest[key] = max(math.ceil(1.5 * int(steps)) + 8, largest.get(key, 0))
    _BOUNDS.update({spec: largest[_trace_key(spec)] for spec in specs})
    return {spec: _BOUNDS[spec] for spec in specs}


@functools.cache
def _forward_steps(key: ProblemSpec, dtype: str) -> Any:
    """symadj's forward solve of the problems ``key`` stands for, compiled once: its step count."""
    import symadj

    field = make_field(key, problem_arrays(key, lambda a: jnp.asarray(a, dtype=jnp.dtype(dtype))).probe)
    return jax.jit(lambda y0, p, times: symadj.solve(field, y0, times, args=p, method=key.method, rtol=key.rtol,
                                                     atol=key.atol).stats.n_attempts)


class BenchCase:
    """One method on one problem: compiled once (or taken from a case that differs only in
    its arrays), run forward and backward repeatedly. Every method gets the same max_steps
    (:func:`fit_max_steps`), except on problems run at each library's defaults."""

    def __init__(self, method: Method, spec: ProblemSpec, dtype: str = "float32", device: str = "cpu",
                 count_apart: bool = True) -> None:
        arrays = problem_arrays(spec, lambda a: jnp.asarray(a, dtype=jnp.dtype(dtype)))
        self.spec, self.method = spec, method
        self.params, self.y0, self.times = arrays.params, arrays.y0, arrays.times
        self.probe, self.target = arrays.probe, arrays.target
        self.max_steps = None if spec.kind in LIBRARY_DEFAULTS else (
            _BOUNDS.get(spec) or fit_max_steps([spec], dtype)[spec])
        self._gradients: Any = None
        start = time.perf_counter()
        # The probe is drawn from the seed and batch alone, so it may stay a constant of the trace.
        key = (method.name, _trace_key(spec), dtype, count_apart, self.max_steps)
        if key not in _PROGRAMS:
            counter = _Counter()
            counting = self._compile(make_field(spec, self.probe, counter.bump))
            compiled = self._compile(make_field(spec, self.probe)) if count_apart else counting
            _PROGRAMS[key] = (counting, compiled, counter, time.perf_counter() - start)
        self._counting, self._compiled, self._counter, compile_s = _PROGRAMS[key]
        self.info = {"compile_s": compile_s, "temp_mib": self._compiled.memory_analysis().temp_size_in_bytes / 2**20}

    def _loss(self, field: Any) -> Any:
        spec, method = self.spec, self.method
        bound = {} if self.max_steps is None else {"max_steps": self.max_steps}
        if method.library == "symadj":
            import symadj

            def loss(params: Any, y0: Any, times: Any, target: Any) -> Any:
                sol = symadj.solve(field, y0, times, args=params, method=spec.method, rtol=spec.rtol,
                                   atol=spec.atol, gradient=method.mode, options=bound or None)
                return loss_of(jnp, spec, sol.ys, target), sol.stats.n_accepted

            return loss
        import diffrax

        if method.mode == "ReversibleHeun":
            # diffrax's reversible solver, second order: the problem's tableau gives way, and its
            # steps, ten to a hundred times the tableau's, get a bound of their own.
            solver, adjoint = diffrax.ReversibleHeun(), diffrax.RecursiveCheckpointAdjoint()
            bound = {"max_steps": 2**16}
        else:
            solver = {"dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8, "tsit5": diffrax.Tsit5}[spec.method]()
            adjoint = _diffrax_adjoint(method.mode)

        def loss(params: Any, y0: Any, times: Any, target: Any) -> Any:
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(field), solver, times[0], times[-1], None, y0, args=params,
                saveat=diffrax.SaveAt(ts=times), adjoint=adjoint,
                stepsize_controller=diffrax.PIDController(rtol=spec.rtol, atol=spec.atol), **bound)
            return loss_of(jnp, spec, sol.ys, target), sol.stats["num_accepted_steps"]

        return loss

    def _compile(self, field: Any) -> Any:
        grad = jax.jit(jax.value_and_grad(self._loss(field), argnums=(0, 1), has_aux=True))
        # The reversible mode carries a float32 pair in float64, which JAX makes only with x64
        # (the arrays stay float32): compiled with it, as a user of the mode would.
        wide = self.method.library == "symadj" and self.method.mode == "reversible"
        with jax.enable_x64(wide or jax.config.jax_enable_x64):
            return grad.lower(*self._arguments).compile()

    @property
    def _arguments(self) -> tuple:
        return self.params, self.y0, self.times, self.target

    def run(self) -> None:
        """One forward and backward pass, waited for."""
        jax.block_until_ready(self._compiled(*self._arguments))
        jax.effects_barrier()

    def counted(self) -> tuple[int, int]:
        """One forward and backward pass, its gradient kept for :meth:`gradient`: accepted
        steps and evaluations of the field (forward and backward, as counted at run time)."""
        self._counter.calls = 0
        (_, steps), self._gradients = jax.block_until_ready(self._counting(*self._arguments))
        jax.effects_barrier()
        return int(steps), self._counter.calls

    def gradient(self) -> np.ndarray:
        """The gradient of the last :meth:`counted` pass, in canonical order; then dropped."""
        (param_grads, y0_grad), self._gradients = self._gradients, None
        first = y0_grad[0] if isinstance(y0_grad, tuple) else y0_grad
        return gradient_vector([(np.asarray(w), np.asarray(b)) for w, b in param_grads], np.asarray(first))
