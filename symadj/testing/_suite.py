"""The conformance suite's test classes (see :mod:`symadj.testing`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

import symadj
from symadj.backend import Buffer
from symadj.errors import InvalidArgumentError, MaxStepsError, NonFiniteError, UnknownNameError

from ._reference import (
    converged_rotating,
    pair_field,
    reference_solve,
    relative_error,
    rotating_field,
    rotating_problem,
)

__all__ = ["BackendConformance", "BufferConformance", "ForwardConformance", "GradientConformance", "slow"]

#: Output times of the forward checks: two fall inside steps of 1/8, two on step ends.
OUTPUT_TIMES = (0.0, 0.3, 0.5, 0.8, 1.0)
#: The fixed step of the fixed-step checks, exact in binary so that steps land on 1.0.
FIXED_STEP = 0.125
#: Weights of the outputs in the gradient checks' loss (each output counts differently).
OUTPUT_WEIGHTS = (0.0, 0.3, -1.0, 2.0, 0.5)


def slow(*values: Any) -> list[Any]:
    """``values`` as parameters marked ``slow``, for the lists a subclass runs tests over.

    A library that compiles every solve can keep a few cases in its default run and send
    the others to a run of ``pytest -m slow`` (register the ``slow`` marker in the plugin's
    pytest configuration).

    Examples:
        >>> import symadj.testing
        >>> class TestMyLibConformance(symadj.testing.ForwardConformance):
        ...     backend = "numpy"
        ...     adaptive_methods = ("dopri5", *symadj.testing.slow("bosh3", "tsit5"))
        >>> [p.marks[0].name for p in TestMyLibConformance.adaptive_methods[1:]]
        ['slow', 'slow']
    """
    return [pytest.param(value, marks=pytest.mark.slow) for value in values]


# -- the harness -----------------------------------------------------------------------------


_PARAMETERS = {
    "fixed_method": "fixed_step_methods",
    "adaptive_method": "adaptive_methods",
    "exact_mode": "exact_gradient_modes",
    "gradient_method": "gradient_methods",
    "policy": "checkpoint_policies",
    "buffer_shape": "buffer_shapes",
}


class _Harness:
    """What every part shares: the backend under test, arrays of its library, the parameter lists."""

    #: The registry name of the backend under test (set it in the subclass).
    backend: ClassVar[str] = ""
    #: Whether the backend accepts tuple states (the default ``split_state`` does).
    tuple_states: ClassVar[bool] = True

    fixed_step_methods: ClassVar[tuple[str, ...]] = ("euler", "midpoint", "heun3", "rk4", "rk38", "dopri5")
    adaptive_methods: ClassVar[tuple[str, ...]] = ("bosh3", "dopri5", "tsit5", "dopri8")
    buffer_shapes: ClassVar[tuple[tuple[int, ...], ...]] = ((3,), (2, 300))
    #: Names of tests to mark ``slow`` in this subclass (for all their parameters); the
    #: parameter lists above may also hold :func:`slow` values.
    slow_tests: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("slow_tests", ()):
            # A marked copy: marking the inherited function itself would mark it in every subclass.
            test = getattr(cls, name)

            @functools.wraps(test)
            def marked(self: Any, *args: Any, _test: Any = test, **kwargs: Any) -> Any:
                return _test(self, *args, **kwargs)

            setattr(cls, name, pytest.mark.slow(marked))

    def pytest_generate_tests(self, metafunc: Any) -> None:
        # pytest calls a class's own pytest_generate_tests: the lists come from the subclass.
        for argument, attribute in _PARAMETERS.items():
            if argument in metafunc.fixturenames:
                metafunc.parametrize(argument, getattr(self, attribute), ids=str)

    @property
    def symadj_backend(self) -> symadj.Backend:
        """The backend under test, from the registry (as users get it)."""
        if not self.backend:
            raise TypeError(f"{type(self).__name__}: set the class attribute backend to a registered backend name")
        return symadj.get_backend(self.backend)

    @property
    def xp(self) -> Any:
        """The backend's array namespace."""
        return self.symadj_backend.namespace()

    def asarray(self, values: Any, dtype: str = "float64") -> Any:
        """An array of the backend's library holding ``values`` (nested lists or a NumPy array).

        Override where the namespace's ``asarray`` needs more (a device, a config flag).
        """
        xp = self.xp
        result = xp.asarray(np.asarray(values, dtype=dtype).tolist(), dtype=getattr(xp, dtype))
        if str(result.dtype).rsplit(".", 1)[-1] != dtype:
            raise AssertionError(f"asarray made {result.dtype}, not {dtype}: enable {dtype} in the library "
                                 f"(JAX: jax.config.update('jax_enable_x64', True)) or override asarray")
        return result

    def to_numpy(self, x: Any) -> np.ndarray:
        """``x`` (an array of the library, gradients stopped) as a NumPy array."""
        x = self.symadj_backend.stop_gradient(x) if not isinstance(x, np.ndarray) else x
        try:
            return np.asarray(x)
        except (TypeError, RuntimeError, ValueError):
            return np.from_dlpack(x)

    def params(self, values: dict[str, np.ndarray]) -> dict[str, Any]:
        """``values`` (NumPy arrays by name) as arrays of the library."""
        return {name: self.asarray(value) for name, value in values.items()}


# -- (a) forward solves and hostile inputs ---------------------------------------------------


class ForwardConformance(_Harness):
    """Solves against the NumPy reference, and hostile inputs refused with symadj's errors."""

    #: Relative error allowed against the reference where both take the same steps (rounding).
    same_steps_rtol: ClassVar[float] = 1e-12
    #: Tolerances of the adaptive solves, and the error allowed against a converged reference.
    adaptive_tolerance: ClassVar[float] = 1e-8
    adaptive_rtol: ClassVar[float] = 1e-6

    def _solve(self, func: Any, y0: Any, ts: Sequence[float], **kwargs: Any) -> symadj.Solution:
        return symadj.solve(func, y0, self.asarray(list(ts)), backend=self.backend, **kwargs)

    def _rotating(self, ts: Sequence[float], **kwargs: Any) -> tuple[np.ndarray, np.ndarray, symadj.Solution]:
        """The backend's solution of the rotating problem, and its NumPy inputs."""
        y0, params = rotating_problem()
        sol = self._solve(rotating_field(self.xp), self.asarray(y0), ts, args=self.params(params), **kwargs)
        return y0, params, sol

    def test_fixed_step_solve_matches_reference(self, fixed_method: str) -> None:
        y0, params, sol = self._rotating(OUTPUT_TIMES, method=fixed_method, options={"step_size": FIXED_STEP})
        f = rotating_field(np)
        want = reference_solve(lambda t, y: f(t, y, params), y0, OUTPUT_TIMES, symadj.get_tableau(fixed_method),
                               FIXED_STEP)
        got = self.to_numpy(sol.ys)
        assert got.shape == want.shape and got.dtype == np.float64
        assert relative_error(got, want) <= self.same_steps_rtol, fixed_method
        np.testing.assert_allclose(self.to_numpy(sol.ts), OUTPUT_TIMES, rtol=0, atol=0)
        assert int(sol.stats.status) == int(symadj.Status.SUCCESS)
        assert int(sol.stats.n_accepted) == round(1.0 / FIXED_STEP)

    def test_backward_in_time_matches_reference(self) -> None:
        ts = [1.0 - t for t in OUTPUT_TIMES]
        y0, params, sol = self._rotating(ts, method="rk4", options={"step_size": FIXED_STEP})
        f = rotating_field(np)
        # y(t) for decreasing t is z(s) = y(-s) for increasing s, with dz/ds = -f(-s, z).
        want = reference_solve(lambda s, z: -f(-s, z, params), y0, [-t for t in ts], symadj.get_tableau("rk4"),
                               FIXED_STEP)
        assert relative_error(self.to_numpy(sol.ys), want) <= self.same_steps_rtol

    def _converged(self, ts: Sequence[float]) -> np.ndarray:
        return converged_rotating(tuple(ts))

    def test_adaptive_solve_matches_reference(self, adaptive_method: str) -> None:
        tol = self.adaptive_tolerance
        _, _, sol = self._rotating(OUTPUT_TIMES, method=adaptive_method, rtol=tol, atol=tol)
        assert relative_error(self.to_numpy(sol.ys), self._converged(OUTPUT_TIMES)) <= self.adaptive_rtol
        _, _, loose = self._rotating(OUTPUT_TIMES, method=adaptive_method, rtol=1e-3, atol=1e-3)
        assert 0 < int(loose.stats.n_accepted) < int(sol.stats.n_accepted), "tighter tolerances take more steps"

    def test_dense_outputs_match_reference(self) -> None:
        ts = [float(t) for t in np.linspace(0.0, 1.0, 41)]
        tol = self.adaptive_tolerance
        _, _, sol = self._rotating(ts, method="dopri5", rtol=tol, atol=tol)
        assert int(sol.stats.n_accepted) < len(ts) - 1, "outputs must come from inside steps"
        assert relative_error(self.to_numpy(sol.ys), self._converged(ts)) <= self.adaptive_rtol

    def test_tuple_state_matches_reference(self) -> None:
        if not self.tuple_states:
            pytest.skip(f"backend {self.backend!r} does not take tuple states")
        rng = np.random.default_rng(1)
        a0, b0 = rng.normal(size=(2, 3)), rng.normal(size=(3,))
        sol = self._solve(pair_field(self.xp), (self.asarray(a0), self.asarray(b0)), OUTPUT_TIMES, method="rk4",
                          options={"step_size": FIXED_STEP})
        assert isinstance(sol.ys, tuple) and len(sol.ys) == 2
        got = np.concatenate([self.to_numpy(y).reshape(len(OUTPUT_TIMES), -1) for y in sol.ys], axis=1)
        pair = pair_field(np)

        def flat(t: float, y: np.ndarray) -> np.ndarray:
            return np.concatenate([d.reshape(-1) for d in pair(t, (y[:6].reshape(2, 3), y[6:]))])

        want = reference_solve(flat, np.concatenate([a0.reshape(-1), b0]), OUTPUT_TIMES, symadj.get_tableau("rk4"),
                               FIXED_STEP)
        assert self.to_numpy(sol.ys[0]).shape == (len(OUTPUT_TIMES), 2, 3)
        assert relative_error(got, want) <= self.same_steps_rtol

    def test_single_time_gives_initial_state(self) -> None:
        y0, _, sol = self._rotating([0.5])
        np.testing.assert_array_equal(self.to_numpy(sol.ys), y0[None])

    # -- hostile inputs ----------------------------------------------------------------------

    @pytest.mark.parametrize("ts", [(0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0)], ids=["unsorted", "repeated"])
    def test_unsorted_times_are_refused(self, ts: tuple[float, ...]) -> None:
        with pytest.raises(InvalidArgumentError, match="strictly increasing or strictly decreasing"):
            self._rotating(ts)

    def test_nonfinite_initial_state_is_refused(self) -> None:
        y0, params = rotating_problem()
        y0[1, 2] = np.nan
        with pytest.raises(NonFiniteError, match=r"y0 contains NaN or infinity"):
            self._solve(rotating_field(self.xp), self.asarray(y0), OUTPUT_TIMES, args=self.params(params))

    def test_state_turning_nonfinite_is_refused(self) -> None:
        xp = self.xp

        def func(t: Any, y: Any) -> Any:
            return xp.where(t > 0.5, xp.full_like(y, math.inf), -y)

        y0 = self.asarray([1.0, 2.0])
        with pytest.raises(NonFiniteError, match="NaN or infinite"):
            self._solve(func, y0, OUTPUT_TIMES, method="rk4", options={"step_size": FIXED_STEP})
        sol = self._solve(func, y0, OUTPUT_TIMES, method="rk4", options={"step_size": FIXED_STEP}, throw=False)
        assert int(sol.stats.status) != int(symadj.Status.SUCCESS)

    def test_unknown_method_is_refused(self) -> None:
        with pytest.raises(UnknownNameError) as info:
            self._rotating(OUTPUT_TIMES, method="dopri6")
        assert info.value.kind == "method" and "dopri5" in info.value.known

    def test_unknown_gradient_mode_is_refused(self) -> None:
        with pytest.raises(UnknownNameError) as info:
            self._rotating(OUTPUT_TIMES, gradient="sympletic")
        assert info.value.kind == "gradient"

    def test_mixed_dtypes_in_a_state_are_refused(self) -> None:
        if not self.tuple_states:
            pytest.skip(f"backend {self.backend!r} does not take tuple states")
        y0 = (self.asarray([1.0, 2.0]), self.asarray([1.0], dtype="float32"))
        with pytest.raises(InvalidArgumentError, match="must share one dtype"):
            self._solve(lambda t, y: y, y0, OUTPUT_TIMES)

    def test_derivative_of_another_dtype_is_refused(self) -> None:
        xp = self.xp
        with pytest.raises(InvalidArgumentError, match="func returned dtype"):
            self._solve(lambda t, y: xp.astype(-y, xp.float32), self.asarray([1.0, 2.0]), OUTPUT_TIMES)

    def test_integer_state_is_refused(self) -> None:
        with pytest.raises(InvalidArgumentError, match="not a floating dtype"):
            self._solve(lambda t, y: -y, self.asarray([1, 2], dtype="int64"), OUTPUT_TIMES)

    def test_too_few_steps_is_a_max_steps_error(self) -> None:
        with pytest.raises(MaxStepsError):
            self._rotating(OUTPUT_TIMES, method="rk4", options={"step_size": FIXED_STEP, "max_steps": 3})


# -- (b) gradients ---------------------------------------------------------------------------


class GradientConformance(_Harness):
    """Each gradient mode against ``"backprop"``, backprop against finite differences, and
    every checkpoint policy against ``"all"``. Implement :meth:`value_and_grad`."""

    #: The exact modes compared with backprop to :attr:`exact_rtol`.
    exact_gradient_modes: ClassVar[tuple[str, ...]] = ("symplectic", "checkpoint")
    #: The methods the modes run with: adaptive ones with error control, others with fixed steps.
    gradient_methods: ClassVar[tuple[str, ...]] = ("dopri5", "rk4")
    #: The policies compared with ``"all"`` under ``gradient="symplectic"``.
    checkpoint_policies: ClassVar[tuple[str, ...]] = ("stages", "offload", "revolve:2", "revolve:7", "auto:2KiB")
    exact_rtol: ClassVar[float] = 1e-10
    #: The continuous adjoint's error against backprop at tolerances 1e-10.
    adjoint_rtol: ClassVar[float] = 1e-6
    #: ``options["max_steps"]`` of the gradient checks' solves (``None``: the backend's default;
    #: they take under 100 steps): a staged backend whose backprop scans ``max_steps``
    #: iterations runs faster with a small bound.
    max_steps: ClassVar[int | None] = None
    #: How far policies may differ from ``"all"``: 0 (bitwise) for an eager library, where
    #: they run the same products; a compiling one may fuse them differently.
    policy_rtol: ClassVar[float] = 0.0

    def value_and_grad(self, loss: Callable[[Any, Any], Any], y0: Any, params: dict[str, Any]
                       ) -> tuple[Any, Any, dict[str, Any]]:
        """``loss(y0, params)`` and its gradients with respect to ``y0`` and each of ``params``.

        Args:
            loss: a scalar function of the library's arrays.
            y0: the initial state (an array of the library).
            params: a dict of arrays of the library.

        Returns:
            ``(value, grad_y0, {name: grad})``, arrays of the library or NumPy.
        """
        raise NotImplementedError(f"{type(self).__name__}: implement value_and_grad with the library's autodiff")

    def _loss(self, gradient: str, method: str, tol: float = 1e-8, **kwargs: Any) -> Callable[[Any, Any], Any]:
        """A scalar of the solution of the rotating problem, weighing outputs from t=0.3 to 2."""
        xp, func = self.xp, rotating_field(self.xp)
        ts = self.asarray(list(OUTPUT_TIMES) + [2.0])[1:]  # a start that is not 0
        weights = self.asarray(OUTPUT_WEIGHTS)[:, None, None]
        options = {} if symadj.get_tableau(method).adaptive else {"step_size": FIXED_STEP}
        if self.max_steps is not None:
            options["max_steps"] = self.max_steps

        def loss(y0: Any, p: Any) -> Any:
            ys = symadj.odeint(func, y0, ts, args=p, method=method, gradient=gradient, rtol=tol, atol=tol,
                               backend=self.backend, options=options, **kwargs)
            return xp.sum(weights * (ys * ys + ys))

        return loss

    def _evaluate(self, loss: Callable[[Any, Any], Any], y0: np.ndarray, params: dict[str, np.ndarray]
                  ) -> tuple[float, list[np.ndarray]]:
        """The loss and its gradients (``y0`` first, then ``params`` by name) as NumPy."""
        value, grad_y0, grad_params = self.value_and_grad(loss, self.asarray(y0), self.params(params))
        return float(self.to_numpy(value)), [self.to_numpy(grad_y0)] + [self.to_numpy(grad_params[name])
                                                                        for name in sorted(params)]

    def _gradients(self, gradient: str, method: str, **kwargs: Any) -> tuple[float, list[np.ndarray]]:
        return self._evaluate(self._loss(gradient, method, **kwargs), *rotating_problem())

    def test_backend_declares_gradients(self) -> None:
        assert self.symadj_backend.differentiable, f"backend {self.backend!r} says it has no gradient modes"

    def test_backprop_matches_finite_differences(self) -> None:
        y0, params = rotating_problem()
        rng = np.random.default_rng(2)
        dy, dp = rng.normal(size=y0.shape), {k: rng.normal(size=v.shape) for k, v in params.items()}
        loss, eps = self._loss("backprop", "rk4"), 1e-5
        _, grads = self._evaluate(loss, y0, params)
        plus, _ = self._evaluate(loss, y0 + eps * dy, {k: v + eps * dp[k] for k, v in params.items()})
        minus, _ = self._evaluate(loss, y0 - eps * dy, {k: v - eps * dp[k] for k, v in params.items()})
        directional = sum(float(np.sum(g * d)) for g, d in zip(grads, [dy] + [dp[k] for k in sorted(params)]))
        # Central differences err by O(eps²) and by rounding/eps: about 1e-9 here.
        assert abs((plus - minus) / (2 * eps) - directional) <= 1e-8 * abs(directional)

    def test_exact_mode_matches_backprop(self, exact_mode: str, gradient_method: str) -> None:
        value, grads = self._gradients(exact_mode, gradient_method)
        want_value, want = self._gradients("backprop", gradient_method)
        assert value == pytest.approx(want_value, rel=self.exact_rtol)
        for name, got, expected in zip(["y0", *sorted(rotating_problem()[1])], grads, want):
            assert relative_error(got, expected) <= self.exact_rtol, (exact_mode, gradient_method, name)

    def test_adjoint_matches_backprop(self) -> None:
        _, grads = self._gradients("adjoint", "dopri5", tol=1e-10)
        _, want = self._gradients("backprop", "dopri5", tol=1e-10)
        for got, expected in zip(grads, want):
            assert relative_error(got, expected) <= self.adjoint_rtol

    def test_checkpoint_policy_gives_the_gradient_of_all(self, policy: str) -> None:
        if isinstance(symadj.as_checkpoint_policy(policy), symadj.Offload):
            try:
                self.symadj_backend.check_host_storage()
            except InvalidArgumentError as exc:
                pytest.skip(f"no host storage: {exc}")
        _, want = self._gradients("symplectic", "dopri5", checkpoints="all")
        _, grads = self._gradients("symplectic", "dopri5", checkpoints=policy)
        for got, expected in zip(grads, want):
            assert relative_error(got, expected) <= self.policy_rtol, policy

    def test_checkpoint_mode_with_revolve_gives_the_gradient_of_all(self) -> None:
        _, want = self._gradients("checkpoint", "rk4", checkpoints="all")
        _, grads = self._gradients("checkpoint", "rk4", checkpoints="revolve:3")
        for got, expected in zip(grads, want):
            assert relative_error(got, expected) <= self.policy_rtol


# -- (d) storage -----------------------------------------------------------------------------


class BufferConformance(_Harness):
    """The buffers (:class:`symadj.Buffer`) as the engine uses them: write in order, overwrite,
    read, stack; host storage and accumulation."""

    def _filled(self, capacity: int, shape: tuple[int, ...], count: int) -> tuple[Any, list[np.ndarray]]:
        backend, rng = self.symadj_backend, np.random.default_rng(3)
        values = [rng.normal(size=shape) for _ in range(count)]
        buffer = backend.buffer(capacity, self.asarray(np.zeros(shape)))
        assert isinstance(buffer, Buffer), f"{type(buffer).__name__} is not a symadj.Buffer"
        for index, value in enumerate(values):
            buffer = buffer.write(index, self.asarray(value))
        return buffer, values

    def test_buffer_reads_back_what_was_written(self, buffer_shape: tuple[int, ...]) -> None:
        buffer, values = self._filled(10, buffer_shape, 7)
        assert buffer.capacity == 10
        for index, value in enumerate(values):
            np.testing.assert_array_equal(self.to_numpy(buffer.read(index)), value)

    def test_buffer_overwrites_an_entry(self, buffer_shape: tuple[int, ...]) -> None:
        buffer, values = self._filled(10, buffer_shape, 4)
        buffer = buffer.write(2, self.asarray(np.full(buffer_shape, 5.0)))
        np.testing.assert_array_equal(self.to_numpy(buffer.read(2)), np.full(buffer_shape, 5.0))
        np.testing.assert_array_equal(self.to_numpy(buffer.read(3)), values[3])

    def test_buffer_stack_fills_past_the_count(self, buffer_shape: tuple[int, ...]) -> None:
        buffer, values = self._filled(10, buffer_shape, 7)
        stacked = self.to_numpy(buffer.stack(7, self.asarray(np.full(buffer_shape, -1.0))))
        assert stacked.shape == (10, *buffer_shape)
        np.testing.assert_array_equal(stacked[:7], np.stack(values))
        np.testing.assert_array_equal(stacked[7:], np.full((3, *buffer_shape), -1.0))

    def test_buffer_grows_to_its_capacity(self) -> None:
        buffer, values = self._filled(200, (2,), 200)
        stacked = self.to_numpy(buffer.stack(200, self.asarray(np.zeros(2))))
        np.testing.assert_array_equal(stacked, np.stack(values))

    def test_host_buffer_round_trip(self) -> None:
        backend = self.symadj_backend
        try:
            backend.check_host_storage()
        except InvalidArgumentError as exc:
            pytest.skip(f"no host storage: {exc}")
        like = self.asarray(np.zeros(3))
        buffer = backend.host_buffer(4, like)
        for index in range(3):
            buffer = buffer.write(index, backend.to_host(self.asarray(np.full(3, float(index)))))
        back = backend.to_device(buffer.read(1), like)
        np.testing.assert_array_equal(self.to_numpy(back), np.full(3, 1.0))

    def test_accumulate_adds_entry_by_entry(self) -> None:
        totals = [self.asarray([1.0, 2.0]), self.asarray([[3.0]])]
        increments = [self.asarray([0.5, 0.5]), self.asarray([[-3.0]])]
        summed = self.symadj_backend.accumulate(totals, increments)
        np.testing.assert_array_equal(self.to_numpy(summed[0]), [1.5, 2.5])
        np.testing.assert_array_equal(self.to_numpy(summed[1]), [[0.0]])


class BackendConformance(ForwardConformance, GradientConformance, BufferConformance):
    """The whole suite: forward solves, hostile inputs, gradients and storage."""
