"""JAX: ``lax`` loops and branches, functional buffers, ``jax.vjp`` and a ``jax.custom_vjp`` solve.

Everything traces under ``jax.jit`` and ``jax.vmap``: tolerances, output times and
``args`` are traced values, so changing them does not recompile. ``func(t, y, args)``
follows diffrax's convention; the floating-point array leaves of ``args`` are the
parameters gradients flow to.

Failed solves raise eagerly when the values are concrete. Under ``jit`` the check runs
inside the compiled program through ``jax.debug.callback``: the callback raises our
error (``MaxStepsError``, ...) with run-time values in its message, and JAX re-raises it
as a ``JaxRuntimeError`` whose message ends with that text. (equinox's ``error_if``
would do as well but only takes a message fixed at trace time, and equinox is not a
dependency of symadj.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from symadj import InvalidArgumentError, Solution
from symadj.backend import Backend, Buffer, Field

# A Solution can leave a jitted function.
jax.tree_util.register_pytree_node(
    Solution, lambda sol: ((sol.ts, sol.ys, sol.stats), None), lambda _, children: Solution(*children))


@jax.tree_util.register_pytree_node_class
class JaxBuffer(Buffer):
    """A buffer preallocated as one array of ``capacity`` rows, written functionally
    (``.at[index].set``): a pytree, so that loops carry it and jit returns it."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def tree_flatten(self) -> tuple[tuple[Any], None]:
        return (self.data,), None

    @classmethod
    def tree_unflatten(cls, _: None, children: tuple[Any]) -> JaxBuffer:
        return cls(*children)

    @property
    def capacity(self) -> int:
        return self.data.shape[0]

    def write(self, index: Any, value: Any) -> JaxBuffer:
        return JaxBuffer(self.data.at[index].set(value))

    def read(self, index: Any) -> Any:
        return self.data[index]

    def stack(self, count: Any, fill: Any = None) -> Any:
        if isinstance(count, int) and count == self.capacity:
            return self.data
        written = jnp.arange(self.capacity) < count
        return jnp.where(written.reshape((-1,) + (1,) * (self.data.ndim - 1)), self.data, fill)


class JaxField(Field):
    """``func(t, y, args)`` on flat states; ``params`` are the floating array leaves of ``args``.

    The other leaves (Python numbers, integer arrays, ...) are held as they are. Fields
    are rebuilt from parameter leaves (:meth:`with_params`) so that a ``custom_vjp``
    rule never closes over the caller's tracers.
    """

    def __init__(self, func: Callable[..., Any], treedef: Any, leaves: Sequence[Any],
                 param_index: Sequence[int], layout: Any, has_args: bool) -> None:
        self._func = func
        self._treedef = treedef
        self._leaves = tuple(leaves)
        self._param_index = tuple(param_index)
        self._layout = layout
        self._has_args = has_args
        self.params = tuple(self._leaves[i] for i in self._param_index)
        self._flat = layout.wrap(jnp, self._call_user)

    def _call_user(self, t: Any, y: Any) -> Any:
        # Stage times are float64 under x64; a float32 state must not be promoted by them.
        # Times stay real for a complex state: float32 for complex64.
        t = lax.convert_element_type(t, jnp.finfo(self._layout.dtype).dtype)
        if not self._has_args:
            return self._func(t, y)
        return self._func(t, y, jax.tree_util.tree_unflatten(self._treedef, self._leaves))

    def __call__(self, t: Any, y: Any) -> Any:
        return self._flat(t, y)

    def with_params(self, params: Sequence[Any]) -> JaxField:
        leaves = list(self._leaves)
        for index, value in zip(self._param_index, params):
            leaves[index] = value
        return JaxField(self._func, self._treedef, leaves, self._param_index, self._layout, self._has_args)


class JaxBackend(Backend):
    """Gradient modes for JAX arrays and pytrees, traceable under ``jit``/``vmap``."""

    name = "jax"
    loop_integer_max = 2**31 - 1
    staged_loops = True
    # Allocated whole in every compiled solve: about diffrax's default checkpoint memory.
    default_checkpoint_memory = 48 << 20

    def namespace(self) -> Any:
        return jnp

    def handles(self, x: Any) -> bool:
        return isinstance(x, jax.Array)

    def split_state(self, y0: Any) -> tuple[list[Any], Callable[[Any], list[Any]], Callable[[list[Any]], Any]]:
        leaves, treedef = jax.tree_util.tree_flatten(y0)
        if not leaves:
            raise InvalidArgumentError("y0 holds no arrays; give an array or a pytree of arrays")

        def split(state: Any) -> list[Any]:
            try:
                return treedef.flatten_up_to(state)
            except (ValueError, TypeError) as exc:
                raise InvalidArgumentError(
                    f"func returned a {type(state).__name__} whose structure differs from y0's "
                    f"({treedef}): return dy/dt with the structure of y ({exc})"
                ) from None

        return leaves, split, treedef.unflatten

    def as_times(self, t: Any, like: Any) -> Any:
        dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
        return jnp.asarray(t, dtype=dtype)

    def time_inputs(self, t, ts, supported, refusal):
        # Whether t is differentiated is only known when JAX differentiates the solve.
        # The solve itself always sees constant times; a mode that gives time gradients
        # gets a differentiable copy, and any other mode refuses the gradient then.
        # Concrete times (not traced) take no gradient: no time-gradient terms, which would
        # cost a field evaluation per output.
        if not isinstance(t, jax.core.Tracer):
            return ts, None
        if supported:
            return lax.stop_gradient(ts), ts
        return _refuse_gradient(ts, refusal), None

    # -- checks -------------------------------------------------------------
    def check(self, ok: Any, error: Callable[..., Exception], *operands: Any) -> None:
        if not _is_traced((ok, operands)):
            if not bool(np.all(np.asarray(ok))):
                raise error(*operands)
            return

        def raise_unless(ok: Any, *operands: Any) -> None:
            # Under vmap the callback runs once per batch element, with that element's values.
            if not bool(np.all(ok)):
                raise error(*operands)

        def report(operands: tuple) -> None:
            jax.debug.callback(raise_unless, ok, *operands)

        # A host call costs 0.2–1 ms on a CPU: make it only where the check fails (a check
        # per backward segment of the continuous adjoint would otherwise cost one per output).
        # Under vmap the branch becomes a select and the callback runs, judging each element.
        lax.cond(jnp.all(ok), lambda operands: None, report, operands)

    def host_callback(self, fn, *operands):
        if not _is_traced(operands) and _tracing_nothing():
            fn(*operands)
            return
        # Ordered: the meter's start, steps and finish arrive in program order, also from a
        # custom_vjp's backward pass (unordered callbacks of a backward pass may run first).
        jax.debug.callback(fn, *operands, ordered=True)

    # -- control flow -------------------------------------------------------
    def while_loop(self, cond, body, carry, *, max_iterations, differentiable=False):
        carry = _as_arrays(carry)
        if not differentiable:
            return lax.while_loop(cond, lambda c: _like(body(c), c), carry)

        # lax.while_loop has no reverse mode. A scan of max_iterations steps, each skipped
        # once done, can be reversed; its cost: every iteration's residuals are stored,
        # taken or not, so memory grows with max_steps (set options['max_steps'] close to
        # the steps needed when using gradient='backprop').
        def step(c, _):
            return lax.cond(cond(c), lambda c: _like(body(c), c), lambda c: c, c), None

        return lax.scan(step, carry, None, length=max_iterations)[0]

    def fori_loop(self, lower, upper, body, carry):
        carry = _as_arrays(carry)
        return lax.fori_loop(lower, upper, lambda i, c: _like(body(i, c), c), carry)

    def cond(self, pred, on_true, on_false, carry):
        carry = _as_arrays(carry)
        return lax.cond(pred, lambda c: _like(on_true(c), c), lambda c: _like(on_false(c), c), carry)

    def select(self, pred, on_true, on_false):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)

    # -- storage ------------------------------------------------------------
    def buffer(self, capacity, like):
        like = jnp.asarray(like)
        return JaxBuffer(jnp.zeros((capacity, *like.shape), dtype=like.dtype))

    def buffer_of(self, array):
        return JaxBuffer(array)

    # -- checkpoint storage -------------------------------------------------
    def check_host_storage(self):
        device = jax.devices()[0]
        if not any(memory.kind == "pinned_host" for memory in device.addressable_memories()):
            raise InvalidArgumentError(
                f"checkpoints='offload' needs a host memory space, which JAX's {device.platform!r} "
                f"platform does not offer; use checkpoints='all' or 'revolve:K'"
            )

    def host_buffer(self, capacity, like):
        return JaxBuffer(jax.device_put(self.buffer(capacity, like).data, jax.memory.Space.Host))

    def to_host(self, x):
        return jax.device_put(x, jax.memory.Space.Host)

    def to_device(self, x, like):
        return jax.device_put(x, jax.memory.Space.Device)

    # -- autodiff -----------------------------------------------------------
    def stop_gradient(self, x):
        return lax.stop_gradient(x)

    def vjp(self, fn, y, params, cotangent):
        out, pullback = jax.vjp(fn, y, list(params))
        y_bar, params_bar = pullback(cotangent)
        return out, y_bar, list(params_bar)

    def custom_vjp(self, forward, backward, y0, params):
        params = list(params)
        # A custom_vjp rule must not close over the caller's traced values (output times,
        # tolerances, integer leaves of args under jit): both passes are turned into
        # functions of explicit inputs, traced once here.
        closed_forward, forward_consts = _without_closure(forward, y0, params)
        outputs, _, residuals = jax.eval_shape(closed_forward, forward_consts, y0, params)
        closed_backward, backward_consts = _without_closure(backward, residuals, outputs)

        @jax.custom_vjp
        def solve(y0, params, consts):
            outputs, aux, _ = closed_forward(consts[0], y0, params)
            return outputs, _as_arrays(aux)

        def solve_fwd(y0, params, consts):
            outputs, aux, residuals = closed_forward(consts[0], y0, params)
            return (outputs, _as_arrays(aux)), (residuals, consts)

        def solve_bwd(saved, cotangents):
            residuals, consts = saved
            y0_bar, params_bar = closed_backward(consts[1], residuals, cotangents[0])
            return y0_bar, list(params_bar), jax.tree_util.tree_map(_zero_cotangent, consts)

        solve.defvjp(solve_fwd, solve_bwd)
        return solve(y0, params, (forward_consts, backward_consts))

    def time_terms(self, rates_of, fixed, shift):
        # The rates cost a field evaluation per output, and are needed only where the times are
        # differentiated, which JAX tells the backward pass alone (symbolic zeros): evaluated there.
        rates_fn, consts = jax.closure_convert(rates_of, fixed)
        consts = [lax.stop_gradient(c) for c in consts]

        def along_times(rates: Any, shift: Any) -> Any:
            return rates * jnp.reshape(shift, (-1, *(1,) * (fixed.ndim - 1)))

        @jax.custom_vjp
        def terms(shift, fixed, consts):
            return jnp.zeros_like(fixed)

        def terms_fwd(shift, fixed, consts):
            kept = (fixed.value, [c.value for c in consts]) if shift.perturbed else None
            return jnp.zeros_like(fixed.value), (kept, shift.value)

        def terms_bwd(saved, cotangent):
            kept, shift = saved
            if kept is None or isinstance(cotangent, SymbolicZero):
                return None, None, None
            fixed, consts = kept
            rates = rates_fn(fixed, *consts)
            _, pull = jax.vjp(lambda shift: along_times(rates, shift), shift)
            return pull(cotangent)[0], None, None

        terms.defvjp(terms_fwd, terms_bwd, symbolic_zeros=True)
        return terms(shift, fixed, consts)

    def make_field(self, func, args, y0, ts, adjoint_params, layout) -> Field:
        if adjoint_params is not None:
            raise InvalidArgumentError(
                "adjoint_params is for torch; with JAX, pass the parameters in args "
                "(func(t, y, args)): gradients flow to every floating array leaf of args"
            )
        leaves, treedef = jax.tree_util.tree_flatten(args)
        param_index = [i for i, leaf in enumerate(leaves) if _is_float_array(leaf)]
        return JaxField(func, treedef, leaves, param_index, layout, has_args=args is not None)


def _without_closure(fn: Callable[..., Any], *example: Any) -> tuple[Callable[..., Any], list[Any]]:
    """``fn`` as ``closed(consts, *args)`` and the values it closes over, traced ones included.

    ``jax.closure_convert`` would hoist only the floating-point tracers; integer ones
    would stay captured and break ``jax.grad`` of a jitted solve.
    """
    traced, out_shape = jax.make_jaxpr(fn, return_shape=True)(*example)
    out_tree = jax.tree_util.tree_structure(out_shape)

    def closed(consts: list[Any], *args: Any) -> Any:
        flat = jax.core.eval_jaxpr(traced.jaxpr, consts, *jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(out_tree, flat)

    return closed, list(traced.consts)


def _zero_cotangent(x: Any) -> Any:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


def _refuse_gradient(x: Any, refusal: Callable[[], Exception]) -> Any:
    """``x``, raising ``refusal()`` as soon as JAX differentiates with respect to it."""

    @jax.custom_vjp
    def constant(x):
        return x

    def refuse(x):
        raise refusal()

    constant.defvjp(refuse, lambda _, cotangent: (cotangent,))
    return constant(x)


def _is_traced(tree: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def _tracing_nothing() -> bool:
    """Whether JAX is tracing no function now. A host call made while one is traced belongs
    in its program even with concrete operands: made then, a progress meter would open
    when the solve is traced (for the backward pass, while the forward one is traced)
    rather than when it runs."""
    try:
        from jax._src.core import trace_state_clean
    except ImportError:  # a JAX without it: operands traced or not decide, as before
        return True
    return trace_state_clean()


def _is_float_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.inexact)


def _as_arrays(tree: Any) -> Any:
    """Python numbers in a loop carry become arrays (ints as int32) with strong types."""

    def convert(x: Any) -> Any:
        if isinstance(x, bool):
            return jnp.asarray(x, dtype=jnp.bool_)
        if isinstance(x, int):
            return jnp.asarray(x, dtype=jnp.int32)
        x = jnp.asarray(x)
        return lax.convert_element_type(x, x.dtype) if x.weak_type else x

    return jax.tree_util.tree_map(convert, tree)


def _like(new: Any, old: Any) -> Any:
    """``new`` cast to the dtypes of ``old``: branches and loop bodies keep the carry's types."""
    return jax.tree_util.tree_map(lambda n, o: lax.convert_element_type(n, o.dtype), new, old)
