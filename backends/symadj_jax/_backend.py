"""JAX: ``lax`` loops and branches, functional buffers, ``jax.vjp`` and a ``jax.custom_vjp`` solve.

Everything traces under ``jax.jit`` and ``jax.vmap``: tolerances, output times and
``args`` are traced values, so changing them does not recompile. ``func(t, y, args)``
follows diffrax's convention; the floating-point array leaves of ``args``, and the
inexact traced arrays ``func`` closes over, are the parameters gradients flow to.

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

from symadj import InvalidArgumentError, ReconstructionReport, Solution
from symadj.backend import Backend, Buffer, Field

from ._jax_internals import ClosedJaxpr, Tracer, jaxpr_as_fun, memory_space, trace_state_clean

# A Solution can leave a jitted function.
jax.tree_util.register_pytree_node(
    Solution, lambda sol: ((sol.ts, sol.ys, sol.stats), None), lambda _, children: Solution(*children))
# Stats may carry one; it holds no arrays, and the backward pass's host callback fills it in.
jax.tree_util.register_pytree_node(ReconstructionReport, lambda report: ((), report), lambda report, _: report)


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


class _UserFunction:
    """``func(t, y[, args])`` on flat states, with the values gradients flow to as inputs.

    Those are the floating array leaves of ``args`` and the inexact traced values ``func``
    closes over (an array captured under ``jax.grad``, ``jit`` or ``vmap``), found by
    tracing ``func`` once. A field reading a captured value is evaluated from its traced
    program with that value replaced, so that a ``custom_vjp`` rule differentiates it
    (diffrax converts closures for the same reason); without one, ``func`` is called as
    it is. Other closed-over values (integer tracers, concrete arrays) stay as they are.
    """

    def __init__(self, func: Callable[..., Any], args: Any, layout: Any) -> None:
        leaves, self._treedef = jax.tree_util.tree_flatten(args)
        self._func = func
        self._leaves = tuple(leaves)
        self._has_args = args is not None
        self._layout = layout
        self.param_index = tuple(i for i, leaf in enumerate(leaves) if _is_float_array(leaf))
        self.captured: tuple[Any, ...] = ()
        # Traced programs by the shapes and dtypes of (t, y, args' parameters).
        self._programs: dict[Any, tuple[Any, Any, list[int | None]]] = {}

    def args_params(self) -> tuple[Any, ...]:
        return tuple(self._leaves[i] for i in self.param_index)

    def plain(self, args_params: Sequence[Any]) -> Callable[[Any, Any], Any]:
        """The flat function with ``args_params`` in ``args`` and closures as they are."""
        leaves = list(self._leaves)
        for index, value in zip(self.param_index, args_params):
            leaves[index] = value
        if self._has_args:
            args = jax.tree_util.tree_unflatten(self._treedef, leaves)
            return self._layout.wrap(jnp, lambda t, y: self._func(t, y, args))
        return self._layout.wrap(jnp, self._func)

    def find_captured(self, t: Any, y: Any) -> None:
        """Trace ``func`` at ``(t, y)`` to find the inexact traced values it closes over.

        Outside any trace there are none to find, and ``func`` is not traced.
        """
        if trace_state_clean():
            return
        t, args_params = self.time(t), self.args_params()
        traced = self._trace(t, y, args_params)
        found: dict[int, Any] = {}
        for value in traced[1]:
            if _is_inexact_tracer(value):
                found.setdefault(id(value), value)
        self.captured = tuple(found.values())
        if self.captured:
            key = _signature(t, y, args_params)
            self._programs[key] = self._slotted(*traced, signature=key)

    def __call__(self, t: Any, y: Any, args_params: Sequence[Any], captured: Sequence[Any]) -> Any:
        t = self.time(t)
        key = _signature(t, y, args_params)
        if key not in self._programs:
            self._programs[key] = self._slotted(*self._trace(t, y, args_params), signature=key)
        program, out_tree, slots = self._programs[key]
        consts = [value if slot is None else captured[slot] for value, slot in zip(program.consts, slots)]
        flat = jaxpr_as_fun(ClosedJaxpr(program.jaxpr, consts))(*jax.tree_util.tree_leaves((t, y, list(args_params))))
        return jax.tree_util.tree_unflatten(out_tree, flat)

    def time(self, t: Any) -> Any:
        # Stage times are float64 under x64; a float32 state must not be promoted by them.
        # Times stay real for a complex state: float32 for complex64.
        return lax.convert_element_type(t, jnp.finfo(self._layout.dtype).dtype)

    def _trace(self, t: Any, y: Any, args_params: Sequence[Any]) -> tuple[Any, list[Any], Any]:
        program, out_shape = jax.make_jaxpr(lambda t, y, p: self.plain(p)(t, y), return_shape=True)(
            t, y, list(args_params))
        return program, list(program.consts), jax.tree_util.tree_structure(out_shape)

    def _slotted(self, program: Any, consts: list[Any], out_tree: Any, signature: Any) -> tuple[Any, Any, list]:
        """The program with, for each closed-over value, its position in ``captured`` (or None)."""
        positions = {id(value): index for index, value in enumerate(self.captured)}
        slots = [positions.get(id(value)) for value in consts]
        for value, slot in zip(consts, slots):
            if slot is None and _is_inexact_tracer(value):
                raise InvalidArgumentError(
                    f"func (or an event function) closes over a traced {value.dtype} array of shape "
                    f"{tuple(value.shape)} that it did not read at t[0] with y0's shapes (here: "
                    f"{signature}), so symadj cannot differentiate it; pass it in args (func(t, y, args))"
                )
        return program, out_tree, slots


class JaxField(Field):
    """``func(t, y, args)`` on flat states; ``params`` are the floating array leaves of ``args``
    followed by the inexact traced values ``func`` closes over (and, once shared with the
    event functions by :meth:`JaxBackend.share_params`, theirs).

    The other leaves (Python numbers, integer arrays, ...) are held as they are. Fields
    are rebuilt from parameters (:meth:`with_params`) so that a ``custom_vjp`` rule never
    closes over the caller's tracers.
    """

    def __init__(self, user: _UserFunction, params: Sequence[Any], own: Sequence[int]) -> None:
        self._user = user
        self.params = tuple(params)
        self._own = tuple(own)
        # A field reading no captured value calls func as it is.
        self._plain = None if user.captured else user.plain(self.params[:len(user.param_index)])

    @classmethod
    def bind(cls, user: _UserFunction) -> JaxField:
        args_params = user.args_params()
        return cls(user, (*args_params, *user.captured),
                   range(len(args_params), len(args_params) + len(user.captured)))

    def __call__(self, t: Any, y: Any) -> Any:
        if self._plain is not None:
            return self._plain(self._user.time(t), y)
        n_args = len(self._user.param_index)
        return self._user(t, y, self.params[:n_args], [self.params[i] for i in self._own])

    def with_params(self, params: Sequence[Any]) -> JaxField:
        return JaxField(self._user, params, self._own)


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
        if not isinstance(t, Tracer):
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
        return JaxBuffer(jax.device_put(self.buffer(capacity, like).data, memory_space("host")))

    def to_host(self, x):
        return jax.device_put(x, memory_space("host"))

    def to_device(self, x, like):
        return jax.device_put(x, memory_space("device"))

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

    def deferred_time_terms(self, rates_of, fixed, shift):
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
                "adjoint_params is for torch; with JAX, gradients flow to every floating array leaf "
                "of args (func(t, y, args)) and to the traced arrays func closes over: drop adjoint_params"
            )
        user = _UserFunction(func, args, layout)
        user.find_captured(ts[0], y0)
        return JaxField.bind(user)

    def share_params(self, fields):
        fields = list(fields)
        if not any(field._user.captured for field in fields):
            return tuple(fields)
        # Every field binds the same args: their parameters lead the list, then each field's own.
        n_args = len(fields[0]._user.param_index)
        params, owns = list(fields[0].params[:n_args]), []
        for field in fields:
            owns.append(range(len(params), len(params) + len(field._own)))
            params.extend(field.params[i] for i in field._own)
        return tuple(JaxField(field._user, params, own) for field, own in zip(fields, owns))


def _without_closure(fn: Callable[..., Any], *example: Any) -> tuple[Callable[..., Any], list[Any]]:
    """``fn`` as ``closed(consts, *args)`` and the values it closes over, traced ones included.

    ``jax.closure_convert`` would hoist only the floating-point tracers; integer ones
    would stay captured and break ``jax.grad`` of a jitted solve.
    """
    traced, out_shape = jax.make_jaxpr(fn, return_shape=True)(*example)
    out_tree = jax.tree_util.tree_structure(out_shape)

    def closed(consts: list[Any], *args: Any) -> Any:
        flat = jaxpr_as_fun(ClosedJaxpr(traced.jaxpr, consts))(*jax.tree_util.tree_leaves(args))
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
    return any(isinstance(leaf, Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def _tracing_nothing() -> bool:
    """Whether JAX is tracing no function now. A host call made while one is traced belongs
    in its program even with concrete operands: made then, a progress meter would open
    when the solve is traced (for the backward pass, while the forward one is traced)
    rather than when it runs."""
    return trace_state_clean()


def _is_inexact_tracer(x: Any) -> bool:
    return isinstance(x, Tracer) and jnp.issubdtype(x.dtype, jnp.inexact)


def _signature(*tree: Any) -> tuple:
    return tuple((jnp.shape(leaf), jnp.result_type(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


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
