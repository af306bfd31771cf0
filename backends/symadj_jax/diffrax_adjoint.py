"""``adjoint=symadj.diffrax.SymplecticAdjoint()``: the symplectic adjoint as a ``diffrax.AbstractAdjoint``.

Design (issue 29).

* **The forward solve is diffrax's own.** :meth:`SymplecticAdjoint.loop` calls diffrax's
  loop (``AbstractAdjoint._loop``) with the solver, controller and ``SaveAt`` unchanged; only
  the outer while loop is ours, a plain ``lax.while_loop`` around diffrax's body that also
  writes, for every step, the step's start time, end time, start state and where its
  ``SaveAt(ts=...)`` outputs begin, at the index of the accepted step (a rejected step is
  overwritten by the next try). Steps, ``ys``, ``stats`` and ``result`` are diffrax's.
* **The backward pass is the symplectic partner of the solver's tableau.** The whole loop
  is one ``equinox.filter_custom_vjp`` of ``(y0, args, term, fns)``, as diffrax's
  ``BacksolveAdjoint``; the backward pass walks the accepted steps in reverse. Each step
  recomputes its stages from its stored start state (``term.vf_prod``, as diffrax's
  Runge–Kutta step), then takes one vector–Jacobian product per stage with the partner's
  coefficients (``symadj.Tableau.adjoint``, derived from the solver's ``ButcherTableau`` and
  verified as symadj's own tableaux are). In diffrax's ``k = f·dt`` variables the partner
  gives κ_i = b_i λ' + Σ_{j>i} a_ji μ_j (+ the outputs' cotangent on k_i), μ_i = ∂k_iᵀ κ_i,
  λ_n = λ' + Σ μ_i: the exact gradient of the discrete solve, as backpropagation through it
  (``RecursiveCheckpointAdjoint``) gives, holding one stage's graph at a time.
* **Outputs.** ``SaveAt(t0, t1, steps=...)`` add their cotangent (through ``fn``) to λ at
  the state they saved; ``SaveAt(ts=...)`` outputs are diffrax's own interpolation of the step
  (its ``interpolation_cls`` over ``y0, y1, k``), so their cotangent on ``(y0, y1, k)`` is the
  vector–Jacobian product of that interpolation, taken in the step that produced them. Rows are
  found as diffrax writes them: the forward pass records, per step and ``SubSaveAt``, the first
  row the step writes and the first of its ``ts`` it saves (its ``ts`` rows, then its
  ``steps=k`` row when k divides the step count); ``t1``'s row is the last written, which an
  event can leave before unreached ``ts`` rows.
* **Closures.** The term's ``vf``, ``contr``, ``prod`` and each ``SaveAt`` ``fn`` are
  closure-converted (``equinox.filter_closure_convert``) before the custom rule, and travel in
  its differentiable argument: arrays they close over (a traced parameter, diffrax's time
  direction) are then differentiated, not lost or leaked as tracers.
* **Step sizes** carry no gradient to ``y0`` or the parameters in diffrax (its controllers
  stop gradients through the error estimate), so the accepted steps are constants here. An
  ``Event`` without a root finder only chooses the last step, so it is differentiated alike.
  Times (``t0``, ``t1``, ``ts``, ``dt0``, the controller's) reach the loop outside the custom
  rule: each passes a ``custom_jvp`` identity that raises :class:`DiffraxScopeError` if a
  tangent reaches it (not equinox's or JAX's internal errors).
* **Memory** (:func:`plan`): the forward pass keeps the start state of every ``stride``-th
  accepted step in ``checkpoints`` slots, halving them and doubling the stride when they
  fill; the backward pass recomputes a stride's steps from its kept state into ``segment``
  states (the step is y + Σ b_i k_i, as diffrax's) and walks them back. By default about
  2·√``max_steps`` states are held (``RecursiveCheckpointAdjoint`` keeps about
  √(2·``max_steps``) copies of its loop state), at most :data:`DEFAULT_MEMORY` bytes;
  ``memory=`` or ``checkpoints=`` set them. Per step of ``max_steps``: two times, and an
  index per ``SubSaveAt`` with ``ts`` and per one with ``steps``.
* **max_steps=None** (with ``checkpoints=K`` or ``memory=``, as diffrax's
  ``RecursiveCheckpointAdjoint`` asks): nothing can be sized per step, so the slots keep
  diffrax's whole loop state before the step (its output buffers stripped, :func:`_strip`):
  all a re-run of the loop needs. The backward pass captures diffrax's loop body and condition
  (by running ``_loop`` with an outer loop that only hands them over) and re-runs them from a
  slot: rejected tries included, deterministic, so the same accepted steps. A segment's re-run
  keeps ``K`` loop states, thinned as the forward pass; each step is re-run from the nearest
  (the state before its accepted try and after it give its times, ``ts`` range and end state).
  Up to K² steps a step is re-run about twice more; beyond, up to steps/K² times.
* **Out of scope** (naming ``RecursiveCheckpointAdjoint``, when the solve is differentiated; its
  forward solve still runs, diffrax's loop unchanged): solvers that
  are not explicit Runge–Kutta, terms that are not one ``ODETerm`` (SDE, CDE, multi-term),
  an ``Event`` with a root finder, ``SaveAt(dense=True, solver_state, controller_state,
  made_jump)``, ``max_steps=None`` without ``checkpoints`` or ``memory`` (nothing sizes the
  slots), a ``solver_state`` passed in.

Examples:
    >>> import diffrax, jax.numpy as jnp
    >>> from symadj_jax.diffrax_adjoint import SymplecticAdjoint
    >>> term = diffrax.ODETerm(lambda t, y, a: -a * y)
    >>> sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, 0.1, jnp.array(1.0), args=2.0,
    ...                           adjoint=SymplecticAdjoint())
    >>> round(float(sol.ys[-1]), 4)
    0.1353
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
from fractions import Fraction
from typing import Any, NamedTuple

try:
    import diffrax
    import equinox as eqx
except ImportError as error:  # pragma: no cover - the extra names what to install
    raise ImportError(f"symadj.diffrax needs diffrax and equinox: pip install 'symadj[diffrax]' ({error})") from error
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax import lax

import symadj
from symadj import SymadjError
from symadj.errors import InvalidArgumentError

#: The oldest diffrax whose loop this adjoint wraps (pyproject.toml's ``diffrax`` extra): older ones
#: run the solve differently inside it, and would give wrong gradients, not an error.
DIFFRAX_FLOOR = (0, 7)


def require_diffrax(found: str) -> None:
    """Raise ``ImportError`` unless diffrax version ``found`` is at least :data:`DIFFRAX_FLOOR`.

    Examples:
        >>> require_diffrax("0.7.2")
    """
    release = tuple(int(part) for part in found.split(".")[:2] if part.isdigit())
    if release < DIFFRAX_FLOOR:
        floor = ".".join(map(str, DIFFRAX_FLOOR))
        raise ImportError(f"symadj.diffrax needs diffrax>={floor}, found {found}: pip install 'symadj[diffrax]' "
                          f"(or keep diffrax's own adjoints, e.g. RecursiveCheckpointAdjoint, with this diffrax)")


require_diffrax(importlib.metadata.version("diffrax"))

#: The default bound on the states held, in bytes: the JAX backend's ``checkpoints="auto"`` budget.
DEFAULT_MEMORY = 48 << 20
_ALTERNATIVE = "pass adjoint=diffrax.RecursiveCheckpointAdjoint() for this solve"


class DiffraxScopeError(SymadjError, ValueError):
    """A ``diffeqsolve`` that :class:`SymplecticAdjoint` does not differentiate (raised at trace time)."""


def _scope_error(argument: str, reason: str) -> DiffraxScopeError:
    return DiffraxScopeError(f"symadj.diffrax.SymplecticAdjoint: {argument}: {reason}; {_ALTERNATIVE}")


def _refuse(argument: str, reason: str) -> None:
    raise _scope_error(argument, reason)


_TIMES = _scope_error("t0, t1, ts, dt0", "gradients with respect to times (the interval, SaveAt's ts, the step "
                                          "controller's times) are not supported")


def _is_subsaveat(x: Any) -> bool:
    return isinstance(x, diffrax.SubSaveAt)


def partner_tableau(tableau: diffrax.ButcherTableau, order: int, name: str) -> symadj.Tableau:
    """The verified :class:`symadj.Tableau` of an explicit diffrax ``ButcherTableau``.

    Its ``adjoint`` (the symplectic partner's coefficients) drives the backward pass. diffrax
    stores coefficients as float64: a registered symadj tableau they round (Tsit5's, Dopri8's)
    is taken, verified from its exact coefficients; any other (a user's ``AbstractERK``) is
    verified from the floats, to symadj's tolerance for approximate coefficients.

    Raises:
        TableauError: the coefficients fail the order conditions of ``order``.

    Examples:
        >>> import diffrax
        >>> partner_tableau(diffrax.Tsit5.tableau, 5, "tsit5").name
        'tsit5'
        >>> partner_tableau(diffrax.Heun.tableau, 2, "heun").adjoint.coupling[0]
        (0.0, 1.0)
    """
    c = (0.0,) + tuple(float(x) for x in tableau.c)
    a = ((),) + tuple(tuple(float(x) for x in row) for row in tableau.a_lower)
    return _verified_tableau(name, c, a, tuple(float(x) for x in tableau.b_sol), order)


def _rounds(tab: symadj.Tableau, c: tuple, a: tuple, b: tuple) -> bool:
    """Whether ``c, a, b`` are ``tab``'s coefficients to float64 rounding (a few ulps)."""
    if tab.stages != len(b):
        return False
    pairs = list(zip(tab.c, c)) + list(zip(tab.b, b))
    pairs += [(x, y) for row, mine in zip(tab.a, a) for x, y in zip(row, mine)]
    return all(len(row) == len(mine) for row, mine in zip(tab.a, a)) and all(
        abs(float(x) - y) <= 1e-14 * max(1.0, abs(y)) for x, y in pairs)


@functools.cache
def _verified_tableau(name: str, c: tuple, a: tuple, b: tuple, order: int) -> symadj.Tableau:
    for registered in symadj.list_tableaux():
        tab = symadj.get_tableau(registered)
        if tab.order >= order and _rounds(tab, c, a, b):
            return tab
    exact = lambda row: [Fraction(x) for x in row]  # noqa: E731
    return symadj.Tableau(name, c=exact(c), a=[exact(row) for row in a], b=exact(b), order=order, approximate=True)


def _solver_tableau(solver, terms) -> symadj.Tableau:
    if isinstance(solver, diffrax.Euler):  # diffrax's Euler is not an AbstractERK; its dense output is linear
        return symadj.Tableau("euler", c=[0], a=[[]], b=[1], order=1)
    return partner_tableau(solver.tableau, solver.order(terms), type(solver).__name__.lower())


def _check_scope(*, terms, solver, saveat, event, max_steps, passed_solver_state, bounded) -> symadj.Tableau:
    erk = isinstance(solver, diffrax.AbstractERK) and not solver.tableau.implicit
    if not (erk or isinstance(solver, diffrax.Euler)):
        _refuse("solver", f"{type(solver).__name__} is not an explicit Runge–Kutta solver (AbstractERK)")
    # diffeqsolve wraps each term for the time direction, in a class diffrax does not export.
    inner = terms.term if type(terms).__name__ == "WrapTerm" else terms
    if not isinstance(inner, diffrax.ODETerm):
        _refuse("terms", f"{type(inner).__name__} is not one ODETerm (SDE, CDE and multi-term solves are not "
                         f"supported: their control carries gradients this adjoint does not follow)")
    if event is not None and event.root_finder is not None:
        _refuse("event", "an Event with a root_finder is not supported (its event time depends on the state: "
                         "a gradient this adjoint does not follow); an Event without one (the solve stops at the "
                         "end of the step where it triggers) is")
    if max_steps is None and not bounded:
        _refuse("max_steps", "None needs the number of kept states: give SymplecticAdjoint(checkpoints=K) or "
                             "SymplecticAdjoint(memory=...), or a bound on max_steps")
    if passed_solver_state:
        _refuse("solver_state", "a solver state passed in is not differentiated; omit it")
    if saveat.dense or saveat.solver_state or saveat.controller_state or saveat.made_jump:
        _refuse("saveat", "dense=True, solver_state, controller_state and made_jump are not supported")
    return _solver_tableau(solver, terms)


class Plan(NamedTuple):
    """What :class:`SymplecticAdjoint` holds for the backward pass of one solve.

    ``checkpoints`` states are kept by the forward pass (those of every ``stride``-th accepted
    step, the stride doubling each time they fill); the backward pass recomputes the steps
    of one stride forward from a kept state into ``segment`` more states, then walks them
    back. Besides, per step of ``max_steps``: its two times and, per ``SubSaveAt`` with ``ts``
    or ``steps``, an index; the stages of one step and one stage's graph.
    """

    checkpoints: int
    segment: int

    @property
    def states(self) -> int:
        """States held at the backward pass's peak (kept plus one recomputed segment)."""
        return self.checkpoints + (self.segment if self.segment > 1 else 0)


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(x, 1))))


def _with_checkpoints(checkpoints: int, max_steps: int) -> Plan:
    if checkpoints >= max_steps:
        return Plan(max_steps, 1)
    checkpoints = max(2, checkpoints - checkpoints % 2)  # halving keeps every other slot
    return Plan(checkpoints, _pow2_at_least(math.ceil(max_steps / checkpoints)))


def _unbounded_plan(state_bytes: int, checkpoints: int | None, memory: int | None) -> Plan:
    if checkpoints is None:
        if memory is None:
            raise InvalidArgumentError("symadj.diffrax.plan(max_steps=None): give checkpoints= or memory= (the "
                                       "kept states cannot be sized from an unbounded max_steps)")
        checkpoints = memory // max(state_bytes, 1) // 2
        if checkpoints < 2:
            raise InvalidArgumentError(f"symadj.diffrax.SymplecticAdjoint(memory={memory}): too few states for "
                                       f"max_steps=None; give memory >= {4 * state_bytes} bytes")
    checkpoints = max(2, checkpoints - checkpoints % 2)  # halving keeps every other slot
    return Plan(checkpoints, checkpoints)


def plan(max_steps: int | None, state_bytes: int, checkpoints: int | None = None, memory: int | None = None) -> Plan:
    """The states :class:`SymplecticAdjoint` holds for a solve of at most ``max_steps`` steps.

    ``checkpoints`` fixes the kept states; else at most ``memory`` bytes of states are held
    (the default: :data:`DEFAULT_MEMORY`), and with no ``memory`` given about
    2·√``max_steps`` states, as ``RecursiveCheckpointAdjoint``'s default keeps about
    √(2·``max_steps``) copies of its loop state.

    With ``max_steps=None`` (unbounded), ``checkpoints`` or ``memory`` is needed: as many loop
    states are kept as the backward pass's segment holds (half the budget each).

    Raises:
        InvalidArgumentError: ``memory`` holds too few states for ``max_steps`` steps, naming the least;
            ``max_steps=None`` without ``checkpoints`` or ``memory``.

    Examples:
        >>> plan(4096, 8 * 100)
        Plan(checkpoints=64, segment=64)
        >>> plan(4096, 8 * 100, memory=8 * 100 * 5000)
        Plan(checkpoints=4096, segment=1)
        >>> plan(4096, 8 * 100, checkpoints=1000)
        Plan(checkpoints=1000, segment=8)
        >>> plan(None, 8 * 100, checkpoints=9)
        Plan(checkpoints=8, segment=8)
    """
    if max_steps is None:
        return _unbounded_plan(state_bytes, checkpoints, memory)
    if checkpoints is not None:
        return _with_checkpoints(checkpoints, max_steps)
    budget = (DEFAULT_MEMORY if memory is None else memory) // max(state_bytes, 1)
    if memory is not None and budget >= max_steps:
        return Plan(max_steps, 1)
    segment = _pow2_at_least(math.ceil(math.sqrt(max_steps)))
    kept = math.ceil(max_steps / segment)
    sqrt_plan = _with_checkpoints(kept + kept % 2, max_steps)
    if memory is None and sqrt_plan.states <= budget:
        return sqrt_plan
    segment = 2
    while segment <= budget:
        kept = budget - segment
        if kept - kept % 2 >= 2 and (kept - kept % 2) * segment >= max_steps:
            return _with_checkpoints(kept, max_steps)
        segment *= 2
    if memory is None:  # a state larger than the default budget: the fewest states instead
        return sqrt_plan
    raise InvalidArgumentError(
        f"symadj.diffrax.SymplecticAdjoint(memory={memory}): {budget} states of {state_bytes} bytes fit, too few "
        f"for max_steps={max_steps}; give memory >= {sqrt_plan.states * state_bytes} bytes, or lower max_steps")


class _Slots(NamedTuple):
    """With ``max_steps=None``: ``checkpoints`` slots holding diffrax's loop state (without its output
    buffers) before every ``stride``-th accepted step; it is all a recomputation from there reads."""

    y: Any
    stride: jax.Array


class _Record(NamedTuple):
    """What the forward pass keeps for the backward one.

    Per accepted step (scalars, ``max_steps`` of each): its start and end times and where its
    ``SaveAt(ts=...)`` outputs begin. States: ``checkpoints`` slots holding the start state of
    every ``stride``-th step (slot ``j`` holds step ``j · stride``).
    """

    tprev: jax.Array
    tnext: jax.Array
    ts_start: tuple[jax.Array, ...]  # per SubSaveAt: the first of its ts the step saves
    save_start: tuple[jax.Array, ...]  # per SubSaveAt: the first row the step writes
    y: Any
    stride: jax.Array


def _ts_indices(state) -> tuple[jax.Array, ...]:
    subs = jtu.tree_leaves(state.save_state, is_leaf=lambda x: type(x).__name__ == "SaveState")
    return tuple(s.saveat_ts_index for s in subs)


def _save_indices(state) -> tuple[jax.Array, ...]:
    subs = jtu.tree_leaves(state.save_state, is_leaf=lambda x: type(x).__name__ == "SaveState")
    return tuple(s.save_index for s in subs)


def _halve(record: _Record) -> _Record:
    """Every other kept state, in the first half of the slots; the stride doubles."""
    half = lambda b: b.at[: b.shape[0] // 2].set(b[0 : b.shape[0] - 1 : 2])  # noqa: E731
    return record._replace(y=jtu.tree_map(half, record.y), stride=2 * record.stride)


def _keep(record: _Record, n, y, checkpoints: int) -> _Record:
    """``record`` with the start state ``y`` of accepted step ``n`` kept if ``n`` is on the stride."""
    record = lax.cond(n == checkpoints * record.stride, _halve, lambda r: r, record)
    slot = jnp.where(n % record.stride == 0, n // record.stride, checkpoints)  # out of range: dropped
    return record._replace(y=jtu.tree_map(lambda b, x: b.at[slot].set(x, mode="drop"), record.y, y))


def _recording_loop(box: list, max_steps: int, checkpoints: int, saveat):
    """An ``outer_while_loop`` for diffrax's loop that also records each accepted step into ``box``
    (a rejected step is overwritten by the next try, which has the same index and start state)."""

    def outer_while_loop(cond_fun, body_fun, init_val, **kwargs):
        del kwargs
        subs = jtu.tree_leaves(saveat.subs, is_leaf=_is_subsaveat)
        empty = _Record(
            tprev=jnp.zeros(max_steps, jnp.result_type(init_val.tprev)),
            tnext=jnp.zeros(max_steps, jnp.result_type(init_val.tnext)),
            # Indices only for the SubSaveAts that read them (ts; steps): one unused slot for the others.
            ts_start=tuple(jnp.zeros(max_steps if sub.ts is not None else 1, jnp.int32) for sub in subs),
            save_start=tuple(jnp.zeros(max_steps if sub.steps else 1, jnp.int32) for sub in subs),
            y=jtu.tree_map(lambda x: jnp.zeros((checkpoints,) + jnp.shape(x), x.dtype), init_val.y),
            stride=jnp.asarray(1, jnp.int32),
        )

        def cond(carry):
            state, _, count = carry
            return cond_fun(state) & (count < max_steps)

        def body(carry):
            state, record, count = carry
            n = state.num_accepted_steps
            record = _keep(record, n, state.y, checkpoints)._replace(
                tprev=record.tprev.at[n].set(state.tprev),
                tnext=record.tnext.at[n].set(state.tnext),
                ts_start=tuple(buf.at[n].set(i, mode="drop") for buf, i in zip(record.ts_start, _ts_indices(state))),
                save_start=tuple(buf.at[n].set(i, mode="drop")
                                 for buf, i in zip(record.save_start, _save_indices(state))),
            )
            return body_fun(state), record, count + 1

        final, record, _ = lax.while_loop(cond, body, (init_val, empty, 0))
        box.append(record)
        return final

    return outer_while_loop


def _is_save_state(x: Any) -> bool:
    return type(x).__name__ == "SaveState"


def _output_buffers(state):
    return [x for sub in jtu.tree_leaves(state.save_state, is_leaf=_is_save_state) for x in (sub.ts, sub.ys)]


def _strip(state):
    """diffrax's loop state without its output buffers (``ts``, ``ys``): what a slot keeps."""
    return eqx.tree_at(_output_buffers, state, replace_fn=lambda _: None)


def _restore(stripped, buffers):
    """A stripped loop state made whole again with ``buffers`` (any of the right shapes: a recomputation
    reads none of their values)."""
    return eqx.tree_at(_output_buffers, stripped, buffers, is_leaf=lambda x: x is None)


def _slot(slots: _Slots, j):
    return jtu.tree_map(lambda b: b[j], slots.y)


def _state_keeping_loop(box: list, checkpoints: int):
    """An ``outer_while_loop`` (``max_steps=None``) that also keeps the loop state before every
    stride-th accepted step into ``box`` (that of the accepted try: a rejected one is overwritten)."""

    def outer_while_loop(cond_fun, body_fun, init_val, **kwargs):
        del kwargs
        stripped = _strip(init_val)
        empty = _Slots(jtu.tree_map(lambda x: jnp.zeros((checkpoints,) + jnp.shape(x), jnp.result_type(x)),
                                    stripped), jnp.asarray(1, jnp.int32))

        def body(carry):
            state, slots = carry
            return body_fun(state), _keep(slots, state.num_accepted_steps, _strip(state), checkpoints)

        final, slots = lax.while_loop(lambda carry: cond_fun(carry[0]), body, (init_val, empty))
        box.append(slots)
        return final

    return outer_while_loop


def _capturing_loop(box: list):
    """An ``outer_while_loop`` that runs nothing and hands diffrax's loop body (and its condition) to ``box``:
    how the backward pass re-runs diffrax's own steps, rejected tries included."""

    def outer_while_loop(cond_fun, body_fun, init_val, **kwargs):
        del kwargs
        box.append((cond_fun, body_fun))
        return init_val

    return outer_while_loop


def _plain_loop(max_steps: int | None):
    def outer_while_loop(cond_fun, body_fun, init_val, **kwargs):
        del kwargs

        def cond(carry):
            return cond_fun(carry[0]) if max_steps is None else cond_fun(carry[0]) & (carry[1] < max_steps)

        return lax.while_loop(cond, lambda carry: (body_fun(carry[0]), carry[1] + 1), (init_val, 0))[0]

    return outer_while_loop


def _inner_while_loop(cond_fun, body_fun, init_val, **kwargs):
    del kwargs
    return lax.while_loop(cond_fun, body_fun, init_val)


def _with_fns(saveat, fns):
    return eqx.tree_at(lambda s: [sub.fn for sub in jtu.tree_leaves(s.subs, is_leaf=_is_subsaveat)], saveat, list(fns))


def _run(y_args_terms, *, adjoint, init_state, outer_while_loop, saveat, **kwargs):
    y, args, terms, fns = y_args_terms
    init_state = eqx.tree_at(lambda s: s.y, init_state, y, is_leaf=lambda x: x is None or type(x) is object)
    return adjoint._loop(args=args, terms=terms, init_state=init_state, inner_while_loop=_inner_while_loop,
                         outer_while_loop=outer_while_loop, saveat=_with_fns(saveat, fns), **kwargs)


@eqx.filter_custom_vjp
def _solve(y_args_terms, *, adjoint, tableau, plan, init_state, max_steps, **kwargs):
    return _run(y_args_terms, adjoint=adjoint, init_state=init_state, outer_while_loop=_plain_loop(max_steps),
                max_steps=max_steps, **kwargs)


@_solve.def_fwd
def _solve_fwd(perturbed, y_args_terms, *, adjoint, tableau, plan, init_state, max_steps, **kwargs):
    del perturbed
    box: list = []
    recording = (_state_keeping_loop(box, plan.checkpoints) if max_steps is None
                 else _recording_loop(box, max_steps, plan.checkpoints, kwargs["saveat"]))
    final_state, aux = _run(y_args_terms, adjoint=adjoint, init_state=init_state, outer_while_loop=recording,
                            max_steps=max_steps, **kwargs)
    residuals = _Residuals(box[0], final_state.y, final_state.tprev, final_state.num_accepted_steps,
                           _ts_indices(final_state), final_state.save_state)
    return (final_state, aux), residuals


class _Residuals(NamedTuple):
    record: _Record
    y_final: Any
    t_final: jax.Array
    count: jax.Array
    ts_end: tuple[jax.Array, ...]
    save_state: Any


def _add(x, y):
    return jtu.tree_map(lambda a, b: a + b, x, y)


def _scaled_sum(terms: list[tuple[float, Any]], like: Any) -> Any:
    """Σ weight · tree over the nonzero weights (the zero coefficients skipped when traced)."""
    out = jtu.tree_map(jnp.zeros_like, like)
    for weight, tree in terms:
        if weight != 0.0:
            out = jtu.tree_map(lambda o, x, w=weight: o + w * x, out, tree)
    return out


class _Walk(NamedTuple):
    """What the backward pass knows once, for every step."""

    tableau: symadj.Tableau
    solver: Any
    static: Any  # the non-differentiable part of (args, terms, the SubSaveAts' fns)
    ts_subs: tuple[tuple[Any, int, Any], ...]  # per SubSaveAt with ts: (sub, its index, cotangent)
    steps_subs: tuple[tuple[Any, int, Any, Any], ...]  # per SubSaveAt with steps: (sub, index, saved ts, cotangent)
    record: _Record
    count: jax.Array
    y_final: Any
    ts_end: tuple[jax.Array, ...]
    rerun: Any = None  # max_steps=None: (cond_fun, body_fun, output buffers) of diffrax's loop


class _Step(NamedTuple):
    """One accepted step as the backward pass reads it: its times and, per SubSaveAt, the range of its
    ``ts`` that it saves (for a SubSaveAt without ``ts``, unused)."""

    tprev: jax.Array
    tnext: jax.Array
    ts_start: tuple[jax.Array, ...]
    ts_end: tuple[jax.Array, ...]


def _recorded_step(walk: _Walk, n) -> _Step:
    """Accepted step ``n`` from the per-step records (bounded ``max_steps``)."""
    starts = [jnp.asarray(0, jnp.int32)] * len(walk.ts_end)
    ends = list(starts)
    for _, index, _ in walk.ts_subs:
        starts[index], ends[index] = _ts_range(walk, index, n)
    return _Step(walk.record.tprev[n], walk.record.tnext[n], tuple(starts), tuple(ends))


def _output_vjp(walk: _Walk, index: int, t, y, diff, cotangent):
    """Cotangents on ``(y, diff)`` of a saved output ``fn(t, y, args)`` of the ``index``-th SubSaveAt."""

    def save(y, diff):
        args, _, fns = eqx.combine(diff, walk.static)
        return fns[index](t, y, args)

    return jax.vjp(save, y, diff)[1](cotangent)


def _stage_fn(walk: _Walk, t, control):
    def stage(y, diff):
        args, terms, _ = eqx.combine(diff, walk.static)
        return terms.vf_prod(t, y, args, control)

    return stage


def _stages(walk: _Walk, diff, tprev, tnext, y):
    """The step's stage states Y_i and stage increments k_i = vf_prod(t_i, Y_i), as diffrax's step."""
    tab = walk.tableau.floats
    _, terms, _ = eqx.combine(diff, walk.static)
    control = terms.contr(tprev, tnext)
    times = [tprev + c * (tnext - tprev) for c in tab.c]
    states, ks = [], []
    for i in range(len(tab.b)):
        state = _add(y, _scaled_sum([(a, ks[j]) for j, a in tab.a[i]], y))
        states.append(state)
        ks.append(_stage_fn(walk, times[i], control)(state, diff))
    return states, ks, times, control


def _outputs_vjp(walk: _Walk, n, diff, step: _Step, dense):
    """Cotangents on the step's ``dense`` (y0, y1, k) and on ``diff`` of its ``SaveAt(ts=...)`` outputs."""
    dense_bar = jtu.tree_map(jnp.zeros_like, dense)
    diff_bar = jtu.tree_map(jnp.zeros_like, diff)
    tprev, tnext = step.tprev, step.tnext
    for sub, index, cotangent in walk.ts_subs:
        start, end = step.ts_start[index], step.ts_end[index]

        def one(i, bars, sub=sub, index=index, cotangent=cotangent, start=start):
            t = sub.ts[i]

            def output(dense, diff):
                args, _, fns = eqx.combine(diff, walk.static)
                y = walk.solver.interpolation_cls(t0=tprev, t1=tnext, **dense).evaluate(t)
                return fns[index](t, y, args)

            # Without steps, the ts rows follow t0's; with steps, they start where the step writes.
            row = walk.record.save_start[index][n] + i - start if sub.steps else int(sub.t0) + i
            g = jtu.tree_map(lambda c: c[row], cotangent)
            return _add(bars, jax.vjp(output, dense, diff)[1](g))

        dense_bar, diff_bar = lax.fori_loop(start, end, one, (dense_bar, diff_bar))
    return dense_bar, diff_bar


def _ts_range(walk: _Walk, index: int, n):
    """The ``ts`` indices that accepted step ``n`` saves for the ``index``-th SubSaveAt: [start, end)."""
    following = walk.record.ts_start[index][jnp.minimum(n + 1, len(walk.record.tprev) - 1)]
    return walk.record.ts_start[index][n], jnp.where(n + 1 < walk.count, following, walk.ts_end[index])


def _steps_output_vjp(walk: _Walk, n, y_next, diff):
    """Cotangents on ``(y_next, diff)`` of the outputs ``SaveAt(steps=k)`` saves after step ``n``: those of
    every k-th accepted step, in the row after the step's ``ts`` outputs."""
    y_bar, diff_bar = jtu.tree_map(jnp.zeros_like, y_next), jtu.tree_map(jnp.zeros_like, diff)
    for sub, index, saved_ts, cotangent in walk.steps_subs:
        row = walk.record.save_start[index][n]
        if sub.ts is not None:
            start, end = _ts_range(walk, index, n)
            row = row + end - start
        saved = (n + 1) % int(sub.steps) == 0
        row = jnp.minimum(row, len(saved_ts) - 1)
        t = jnp.where(saved, saved_ts[row], walk.record.tnext[n])
        g = jtu.tree_map(lambda c, saved=saved, row=row: jnp.where(saved, c[row], jnp.zeros_like(c[row])), cotangent)
        y_b, diff_b = _output_vjp(walk, index, t, y_next, diff, g)
        y_bar, diff_bar = _add(y_bar, y_b), _add(diff_bar, diff_b)
    return y_bar, diff_bar


def _advance(walk: _Walk, diff, n, y):
    """Accepted step ``n`` recomputed from its start state ``y``: y + Σ b_i k_i, as diffrax's step."""
    _, ks, _, _ = _stages(walk, diff, walk.record.tprev[n], walk.record.tnext[n], y)
    return _add(y, _scaled_sum(list(zip(walk.tableau.floats.b, ks)), y))


def _walk_segment(walk: _Walk, j, segment: int, lam, diff_bar, diff):
    """The steps from kept slot ``j`` to the next, in reverse: recomputed forward from the slot's state
    into ``segment`` states (none when every step's state was kept), then walked back."""
    stride = walk.record.stride
    start = j * stride
    end = jnp.minimum(start + stride, walk.count)
    kept = lambda i: jtu.tree_map(lambda b: b[jnp.minimum(i, b.shape[0] - 1)], walk.record.y)  # noqa: E731
    y_end = jtu.tree_map(lambda k, f: jnp.where(end < walk.count, k, f), kept(j + 1), walk.y_final)
    states = jtu.tree_map(lambda b, y: jnp.zeros((segment,) + y.shape, y.dtype).at[0].set(b[j]), walk.record.y,
                          y_end)
    if segment > 1:
        def forward(i, states):
            y = _advance(walk, diff, start + i - 1, jtu.tree_map(lambda b: b[i - 1], states))
            return jtu.tree_map(lambda b, x: b.at[i].set(x), states, y)

        states = lax.fori_loop(1, end - start, forward, states)

    def back(carry):
        n, lam, diff_bar = carry
        y = jtu.tree_map(lambda b: b[n - start], states)
        y_next = jtu.tree_map(lambda b, e: jnp.where(n + 1 < end, b[jnp.minimum(n + 1 - start, segment - 1)], e),
                              states, y_end)
        lam, diff_bar = _step_back(walk, n, _recorded_step(walk, n), y, y_next, lam, diff_bar, diff)
        return n - 1, lam, diff_bar

    _, lam, diff_bar = lax.while_loop(lambda carry: carry[0] >= start, back, (end - 1, lam, diff_bar))
    return lam, diff_bar


def _rerun_until(walk: _Walk, state, accepted):
    """diffrax's loop body from ``state`` until ``accepted`` steps are accepted."""
    cond_fun, body_fun, _ = walk.rerun
    return lax.while_loop(lambda s: cond_fun(s) & (s.num_accepted_steps < accepted), body_fun, state)


def _rerun_step(walk: _Walk, state):
    """The next accepted step from ``state``, re-run by diffrax's body (rejected tries included): the loop
    state before its accepted try, and after it."""
    cond_fun, body_fun, _ = walk.rerun
    target = state.num_accepted_steps + 1
    return lax.while_loop(lambda c: cond_fun(c[1]) & (c[1].num_accepted_steps < target),
                          lambda c: (c[1], body_fun(c[1])), (state, state))


def _walk_unbounded_segment(walk: _Walk, j, segment: int, lam, diff_bar, diff):
    """``max_steps=None``: the steps from kept slot ``j`` to the next, in reverse. diffrax's loop is re-run
    from the slot's state, keeping every ``sub``-th step's loop state in ``segment`` slots (thinned as the
    forward pass's); each step is then re-run from the nearest of them (``sub`` = 1 when the segment fits)."""
    stride = walk.record.stride
    start = j * stride
    end = jnp.minimum(start + stride, walk.count)
    buffers = walk.rerun[2]
    first = _restore(_slot(walk.record, j), buffers)
    empty = _Slots(jtu.tree_map(lambda b: jnp.zeros((segment,) + b.shape[1:], b.dtype), walk.record.y),
                   jnp.asarray(1, jnp.int32))
    cond_fun, body_fun, _ = walk.rerun

    def fill(carry):
        state, subs = carry
        return body_fun(state), _keep(subs, state.num_accepted_steps - start, _strip(state), segment)

    _, subs = lax.while_loop(lambda c: cond_fun(c[0]) & (c[0].num_accepted_steps < end), fill, (first, empty))

    def sub_segment(carry):
        i, lam, diff_bar = carry
        base = _restore(_slot(subs, i), buffers)

        def back(carry):
            n, lam, diff_bar = carry
            before, after = _rerun_step(walk, _rerun_until(walk, base, n))
            step = _Step(before.tprev, before.tnext, _ts_indices(before), _ts_indices(after))
            lam, diff_bar = _step_back(walk, n, step, before.y, after.y, lam, diff_bar, diff)
            return n - 1, lam, diff_bar

        sub_end = jnp.minimum(start + (i + 1) * subs.stride, end)
        _, lam, diff_bar = lax.while_loop(lambda c: c[0] >= start + i * subs.stride, back,
                                          (sub_end - 1, lam, diff_bar))
        return i - 1, lam, diff_bar

    _, lam, diff_bar = lax.while_loop(lambda c: c[0] >= 0, sub_segment,
                                      ((end - 1 - start) // subs.stride, lam, diff_bar))
    return lam, diff_bar


def _step_back(walk: _Walk, n, step: _Step, y, y_next, lam, diff_bar, diff):
    """Accepted step ``n`` (from ``y`` to ``y_next``) in reverse: λ_{n+1} → λ_n and the parameters'
    cotangent, by the partner scheme."""
    tprev, tnext = step.tprev, step.tnext
    if walk.steps_subs:
        y_bar, theta_bar = _steps_output_vjp(walk, n, y_next, diff)
        lam, diff_bar = _add(lam, y_bar), _add(diff_bar, theta_bar)
    states, ks, times, control = _stages(walk, diff, tprev, tnext, y)
    k_out = [None] * len(ks)
    if walk.ts_subs:
        dense = dict(y0=y, y1=y_next)
        if not isinstance(walk.solver, diffrax.Euler):
            dense["k"] = jtu.tree_map(lambda *k: jnp.stack(k), *ks)
        dense_bar, outputs_bar = _outputs_vjp(walk, n, diff, step, dense)
        lam = _add(lam, dense_bar["y1"])
        diff_bar = _add(diff_bar, outputs_bar)
        if "k" in dense:
            k_out = [jtu.tree_map(lambda k, i=i: k[i], dense_bar["k"]) for i in range(len(ks))]
    lam_n = lam if not walk.ts_subs else _add(lam, dense_bar["y0"])
    return _stage_walk(walk, states, times, control, lam, k_out, lam_n, diff_bar, diff)


def _stage_walk(walk: _Walk, states, times, control, lam, k_out, lam_n, diff_bar, diff):
    """The partner scheme's stages, last to first, as one ``lax.scan``: one stage's graph is live at a time.

    κ_p = input_weight_p λ' + Σ_q coupling_pq μ_q (+ the outputs' cotangent on k_p),
    μ_p, θ̄_p = the stage's vector–Jacobian product with κ_p; stages no cotangent reaches are skipped.
    """
    coefficients = walk.tableau.adjoint
    order = [i for i in reversed(range(len(states))) if coefficients.active[i] or k_out[i] is not None]
    stack = lambda trees: jtu.tree_map(lambda *x: jnp.stack(x), *trees)  # noqa: E731
    zeros = jtu.tree_map(jnp.zeros_like, lam)
    inputs = (stack([states[i] for i in order]), jnp.stack([times[i] for i in order]),
              jnp.asarray([coefficients.input_weight[i] for i in order]),
              jnp.asarray([[coefficients.coupling[i][j] for j in order] for i in order]),
              stack([zeros if k_out[i] is None else k_out[i] for i in order]), jnp.arange(len(order)))

    def stage(carry, xs):
        mus, lam_n, diff_bar = carry
        state, t, weight, coupling, out, p = xs
        kappa = jtu.tree_map(lambda l, m, o: weight.astype(l.dtype) * l + jnp.tensordot(coupling.astype(m.dtype), m,
                                                                                          axes=1) + o, lam, mus, out)
        mu, theta_bar = jax.vjp(_stage_fn(walk, t, control), state, diff)[1](kappa)
        mus = jtu.tree_map(lambda m, x: m.at[p].set(x), mus, mu)
        return (mus, _add(lam_n, mu), _add(diff_bar, theta_bar)), None

    mus = jtu.tree_map(lambda x: jnp.zeros((len(order),) + x.shape, x.dtype), lam)
    (_, lam_n, diff_bar), _ = lax.scan(stage, (mus, lam_n, diff_bar), inputs)
    return lam_n, diff_bar


def _materialise(cotangent, primal):
    return jtu.tree_map(lambda c, p: jnp.zeros_like(p) if c is None else c, cotangent, primal,
                        is_leaf=lambda x: x is None)


def _subs_and_cotangents(saveat, save_state, grad_save_state):
    is_save_state = lambda x: type(x).__name__ == "SaveState"  # noqa: E731
    subs = jtu.tree_leaves(saveat.subs, is_leaf=_is_subsaveat)
    primal = jtu.tree_leaves(save_state, is_leaf=is_save_state)
    grads = jtu.tree_leaves(grad_save_state, is_leaf=is_save_state)
    if len(grads) != len(primal):  # no cotangent reached the outputs at all
        grads = [None] * len(primal)
    return [(sub, _materialise(None if g is None else g.ys, p.ys)) for sub, p, g in zip(subs, primal, grads)]


@_solve.def_bwd
def _solve_bwd(residuals, grad_obj, perturbed, y_args_terms, *, tableau, plan, init_state, solver, saveat, **kwargs):
    del perturbed
    rerun = None
    if kwargs["max_steps"] is None:
        box: list = []
        _run(y_args_terms, init_state=init_state, solver=solver, saveat=saveat, outer_while_loop=_capturing_loop(box),
             **kwargs)
        buffers = [x for sub in jtu.tree_leaves(residuals.save_state, is_leaf=_is_save_state) for x in (sub.ts, sub.ys)]
        rerun = (*box[0], buffers)
    y0, args, terms, fns = y_args_terms
    diff, static = eqx.partition((args, terms, fns), eqx.is_inexact_array)
    outputs = _subs_and_cotangents(saveat, residuals.save_state, grad_obj[0].save_state)
    ts_subs = tuple((sub, i, g) for i, (sub, g) in enumerate(outputs) if sub.ts is not None)
    primal = jtu.tree_leaves(residuals.save_state, is_leaf=lambda x: type(x).__name__ == "SaveState")
    steps_subs = tuple((sub, i, primal[i].ts, g) for i, (sub, g) in enumerate(outputs) if sub.steps)
    walk = _Walk(tableau, solver, static, ts_subs, steps_subs, residuals.record, residuals.count, residuals.y_final,
                 residuals.ts_end, rerun)
    walk_segment = _walk_segment if rerun is None else _walk_unbounded_segment
    lam = jtu.tree_map(jnp.zeros_like, residuals.y_final)
    diff_bar = jtu.tree_map(jnp.zeros_like, diff)
    for i, (sub, g) in enumerate(outputs):
        if sub.t1 and sub.steps != 1:  # steps=1 saves the final state as its last step; steps=k, if k | N
            # The row t1 was written to: the last, unless an event ended the solve before some ts.
            row = primal[i].save_index - 1
            saved = residuals.count % int(sub.steps) != 0 if sub.steps else True
            y_bar, theta_bar = _output_vjp(walk, i, residuals.t_final, residuals.y_final, diff, jtu.tree_map(
                lambda c, row=row, saved=saved: jnp.where(saved, c[row], jnp.zeros_like(c[row])), g))
            lam, diff_bar = _add(lam, y_bar), _add(diff_bar, theta_bar)

    def body(carry):
        j, lam, diff_bar = carry
        lam, diff_bar = walk_segment(walk, j, plan.segment, lam, diff_bar, diff)
        return j - 1, lam, diff_bar

    last = jnp.where(residuals.count > 0, (residuals.count - 1) // residuals.record.stride, -1)
    _, lam, diff_bar = lax.while_loop(lambda carry: carry[0] >= 0, body, (last, lam, diff_bar))
    for i, (sub, g) in enumerate(outputs):
        if sub.t0:
            y_bar, theta_bar = _output_vjp(walk, i, init_state.tprev, y0, diff, jtu.tree_map(lambda c: c[0], g))
            lam, diff_bar = _add(lam, y_bar), _add(diff_bar, theta_bar)
    return (lam, *diff_bar)


def _refusing_differentiation(tree, error: DiffraxScopeError):
    """``tree`` unchanged, except that differentiating any of its arrays raises ``error`` when traced."""

    @jax.custom_jvp
    def identity(x):
        return x

    @identity.defjvp
    def _refuse_jvp(primals, tangents):
        raise error

    return jtu.tree_map(lambda x: identity(x) if eqx.is_inexact_array(x) else x, tree)


class _ConvertedTerm(diffrax.AbstractTerm):
    """A term whose functions are closure-converted: what they close over are leaves, differentiable."""

    vf_fn: Any
    contr_fn: Any
    prod_fn: Any

    def vf(self, t, y, args):
        return self.vf_fn(t, y, args)

    def contr(self, t0, t1, **kwargs):
        del kwargs
        return self.contr_fn(t0, t1)

    def prod(self, vf, control):
        return self.prod_fn(vf, control)


def _converted(terms, saveat, init_state, args):
    """The term and the SubSaveAts' ``fn`` closure-converted, as diffrax's own code paths would see them.

    Values a function closes over (a traced parameter, diffrax's time direction) would otherwise
    be hidden from the custom gradient rule: lost gradients, or tracers leaking out of it.
    """
    t, y = init_state.tprev, init_state.y
    vf = eqx.filter_closure_convert(terms.vf, t, y, args)
    contr = eqx.filter_closure_convert(lambda t0, t1: terms.contr(t0, t1), t, init_state.tnext)
    zeros = lambda tree: jtu.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), tree)  # noqa: E731
    vf_example = zeros(jax.eval_shape(terms.vf, t, y, args))
    control_example = zeros(jax.eval_shape(terms.contr, t, init_state.tnext))
    prod = eqx.filter_closure_convert(terms.prod, vf_example, control_example)
    subs = jtu.tree_leaves(saveat.subs, is_leaf=_is_subsaveat)
    fns = tuple(eqx.filter_closure_convert(sub.fn, t, y, args) for sub in subs)
    return _ConvertedTerm(vf, contr, prod), fns


def _without_gradient(init_state):
    """The loop's initial state as the custom rule takes it: its times refuse a gradient (``_TIMES``);
    the rest carries none (the solver's and controller's states: the walk recomputes every stage;
    the outputs saved at t0: the walk adds their cotangent; the event's values: where it triggers
    is discrete)."""
    times = lambda s: (s.tprev, s.tnext, s.event_tprev, s.event_tnext, s.dense_ts)  # noqa: E731
    init_state = eqx.tree_at(times, init_state, replace_fn=lambda x: _refusing_differentiation(x, _TIMES),
                             is_leaf=lambda x: x is None)
    constant = lambda s: (s.solver_state, s.controller_state, s.save_state, s.event_dense_info,  # noqa: E731
                          s.event_values)
    return eqx.tree_at(constant, init_state, replace_fn=lax.stop_gradient, is_leaf=lambda x: x is None)


def _positive_or_none(checkpoints: int | None) -> int | None:
    if checkpoints is None or (isinstance(checkpoints, int) and not isinstance(checkpoints, bool) and checkpoints > 0):
        return checkpoints
    raise InvalidArgumentError(f"SymplecticAdjoint(checkpoints={checkpoints!r}): give a positive integer "
                               f"(the states to keep), or None for a memory budget")


def _bytes_or_none(memory: int | str | None) -> int | None:
    return None if memory is None else symadj.parse_bytes(memory, "SymplecticAdjoint(memory=...)")


class SymplecticAdjoint(diffrax.AbstractAdjoint):
    """The symplectic adjoint for ``diffrax.diffeqsolve``: diffrax's forward solve, symadj's exact gradient.

    Pass it as ``diffeqsolve(..., adjoint=SymplecticAdjoint())``. The solve (steps, ``ys``,
    ``stats``, ``result``) is diffrax's own; reverse-mode gradients with respect to ``y0``,
    ``args`` and the terms' parameters equal ``RecursiveCheckpointAdjoint``'s (the gradient of
    the discrete solve), computed by the symplectic partner of the solver's tableau, one
    vector–Jacobian product per stage. Explicit Runge–Kutta solvers, one ODE term,
    ``SaveAt(t0, t1, ts, steps=True, fn, subs)``; differentiating anything else raises
    :class:`DiffraxScopeError` when traced (its forward solve runs as diffrax's).
    ``max_steps=None`` needs ``checkpoints`` or ``memory`` (the loop states kept), as diffrax's
    ``RecursiveCheckpointAdjoint`` does.

    Examples:
        >>> import diffrax, jax, jax.numpy as jnp
        >>> def final(a):
        ...     term = diffrax.ODETerm(lambda t, y, a: -a * y)
        ...     sol = diffrax.diffeqsolve(term, diffrax.Dopri5(), 0.0, 1.0, 0.1, jnp.array(1.0), args=a,
        ...                               adjoint=SymplecticAdjoint())
        ...     return sol.ys[-1]
        >>> round(float(jax.grad(final)(2.0)), 4)  # d/da exp(-a) = -exp(-a)
        -0.1353
    """

    checkpoints: int | None = eqx.field(default=None, static=True, converter=_positive_or_none)
    memory: int | None = eqx.field(default=None, static=True, converter=_bytes_or_none)

    def plan(self, max_steps: int | None, y0: Any) -> Plan:
        """The states this adjoint holds for a solve of ``y0`` with at most ``max_steps`` steps
        (with ``max_steps=None``, ``y0`` is what one slot keeps: diffrax's loop state).

        Examples:
            >>> import jax.numpy as jnp
            >>> SymplecticAdjoint(memory="1MiB").plan(4096, jnp.zeros(1000, jnp.float32))
            Plan(checkpoints=230, segment=32)
        """
        leaves = [x for x in jtu.tree_leaves(y0) if eqx.is_array(x)]
        return plan(max_steps, sum(x.size * x.dtype.itemsize for x in leaves), self.checkpoints, self.memory)

    def loop(self, *, args, terms, solver, event, saveat, max_steps, init_state, passed_solver_state, **kwargs):
        """Run diffrax's loop under the symplectic adjoint (diffrax's ``AbstractAdjoint`` contract).

        ``kwargs`` are the rest of that contract (``stepsize_controller``, ``t0``, ``t1``, ``dt0``,
        ``throw``, ``passed_controller_state``, ``progress_meter``), passed on to diffrax's loop.
        """
        del kwargs["throw"], kwargs["passed_controller_state"]
        try:
            tableau = _check_scope(terms=terms, solver=solver, saveat=saveat, event=event, max_steps=max_steps,
                                   passed_solver_state=passed_solver_state,
                                   bounded=self.checkpoints is not None or self.memory is not None)
        except DiffraxScopeError as error:
            # Out of scope: diffrax's forward solve still runs; differentiating it raises ``error``.
            args, terms, event, saveat, init_state, kwargs = _refusing_differentiation(
                (args, terms, event, saveat, init_state, kwargs), error)
            return self._loop(args=args, terms=terms, solver=solver, event=event, saveat=saveat,
                              max_steps=max_steps, init_state=init_state, inner_while_loop=_inner_while_loop,
                              outer_while_loop=_plain_loop(max_steps), **kwargs)
        y0 = init_state.y
        # With max_steps=None a slot keeps diffrax's whole loop state (the solver's state too), not y.
        held = self.plan(max_steps, y0 if max_steps is not None else _strip(init_state))
        term, fns = _converted(terms, saveat, init_state, args)
        # Times reach the solve outside its custom rule: a gradient to them raises _TIMES when traced.
        saveat, kwargs = _refusing_differentiation((saveat, kwargs), _TIMES)
        init_state = _without_gradient(eqx.tree_at(lambda s: s.y, init_state, object(), is_leaf=lambda x: x is None))
        final_state, aux = _solve((y0, args, term, fns), adjoint=self, tableau=tableau, plan=held,
                                  init_state=init_state,
                                  solver=solver, event=event, saveat=saveat, max_steps=max_steps, **kwargs)
        # Counts and the result code leave the custom rule with a (zero) tangent that diffrax's
        # error_if cannot linearise; they carry no gradient anyway.
        counts = lambda s: (s.result, s.num_steps, s.num_accepted_steps, s.num_rejected_steps)  # noqa: E731
        final_state = eqx.tree_at(counts, final_state, replace_fn=lax.stop_gradient)
        return final_state, aux
