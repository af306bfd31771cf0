"""Hostile inputs: each is refused with the right error from symadj's hierarchy, a message that
names the argument (time, file, field) and the fix, and nothing left half-done.

test_engine.py, test_tableau.py and test_registry.py hold the first cases of several kinds
(on numpy, for single files and plugins); here they run on every backend and go further.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
from conftest import make_array

import symadj
from symadj import (
    BackendUnavailableError,
    DuplicateNameError,
    InvalidArgumentError,
    MaxStepsError,
    NonFiniteError,
    StepSizeUnderflowError,
    SymadjError,
    Tableau,
    TableauError,
    UnknownNameError,
)
from symadj._plugins import Registry
from symadj._tableaux_plugin import shipped_tableaux_dir

BACKENDS = ["numpy", "torch", "jax"]


@pytest.fixture(params=BACKENDS)
def lib(request):
    pytest.importorskip(request.param)
    return request.param


def _arr(lib, values):
    return make_array(lib, values)


def _where(lib, cond, bad, y):
    """``bad`` where ``cond`` (a scalar time condition), else ``-y``, in ``lib``'s operations."""
    if lib == "torch":
        import torch

        return torch.where(cond, torch.full_like(y, bad), -y)
    if lib == "jax":
        import jax.numpy as jnp

        return jnp.where(cond, bad, -y)
    return np.where(cond, bad, -y)


def _solve(lib, func, y0=(1.0, 2.0), t=(0.0, 1.0), **kwargs):
    return symadj.odeint(func, _arr(lib, list(y0)), _arr(lib, list(t)), **kwargs)


# -- non-finite values --------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_y0(lib, bad):
    with pytest.raises(NonFiniteError, match=r"y0 contains NaN or infinity at the initial time t\[0\]"):
        _solve(lib, lambda t, y: -y, y0=(1.0, bad))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's inf - inf, on purpose
def test_func_turning_nonfinite_mid_solve_names_time_and_step(lib, bad, method):
    options = {"step_size": 0.1} if method == "rk4" else None
    with pytest.raises(NonFiniteError, match=r"NaN or infinite in the step from t=0\.\d+ \(after \d+ accepted steps\)"
                       r".*check func"):
        _solve(lib, lambda t, y: _where(lib, t > 0.5, bad, y), method=method, options=options)
    sol = symadj.solve(lambda t, y: _where(lib, t > 0.5, bad, y), _arr(lib, [1.0, 2.0]), _arr(lib, [0.0, 0.25, 1.0]),
                       method=method, options=options, throw=False)
    assert sol.status is symadj.Status.NONFINITE
    assert int(sol.stats.n_outputs) == 2 and 0.4 <= float(sol.stats.t_final) <= 0.5  # the failing step's start
    ys = np.asarray(sol.ys)
    assert np.all(np.isfinite(ys[:2])) and np.all(np.isnan(ys[2]))  # what was reached, and nothing else


def test_nonfinite_under_jax_jit_reports_our_error_at_run_time():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    ts = jnp.array([0.0, 1.0])
    solve = jax.jit(lambda y0: symadj.odeint(lambda t, y: jnp.where(t > 0.5, jnp.nan, -y), y0, ts))
    with pytest.raises(Exception, match=r"NonFiniteError: the state became NaN or infinite in the step from t=0\.5"):
        jax.block_until_ready(solve(jnp.ones(2)))
    with pytest.raises(Exception, match=r"NonFiniteError: y0 contains NaN"):
        jax.block_until_ready(jax.jit(lambda y0: symadj.odeint(lambda t, y: -y, y0, ts))(jnp.array([jnp.nan])))


def test_failed_torch_solve_leaves_no_gradients_behind():
    torch = pytest.importorskip("torch")
    func = torch.nn.Linear(2, 2).double()
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(NonFiniteError):
        symadj.odeint(lambda t, y: func(y) * torch.where(t > 0.5, torch.nan, 1.0), y0, ts,
                      adjoint_params=list(func.parameters()))
    assert y0.grad is None and all(p.grad is None for p in func.parameters())
    symadj.odeint(lambda t, y: func(y), y0, ts, adjoint_params=list(func.parameters()))[-1].sum().backward()
    assert y0.grad is not None  # the next solve works as if nothing happened


# -- what func returns ------------------------------------------------------------

def _astype(lib, y, dtype):
    if lib == "torch":
        import torch

        return y.to(getattr(torch, dtype))
    return y.astype(dtype)


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        (lambda lib, y: y[:1], r"func returned shape \(1,\), expected \(2,\): dy/dt must have the shape of y"),
        (lambda lib, y: y[None], r"func returned shape \(1, 2\), expected \(2,\)"),
        (lambda lib, y: _astype(lib, -y, "float32"), r"func returned dtype .*float32, expected .*float64 .*keep dy/dt"),
        (lambda lib, y: [1.0, 2.0], r"func returned a list, expected an array like y"),
        (lambda lib, y: None, r"func returned a NoneType, expected an array like y"),
    ],
    ids=["short", "broadcast", "dtype", "list", "none"],
)
def test_func_returning_the_wrong_thing(lib, returns, message):
    with pytest.raises(InvalidArgumentError, match=message):
        _solve(lib, lambda t, y: returns(lib, y))


def test_tuple_state_func_returning_an_array(lib):
    y0 = (_arr(lib, [1.0]), _arr(lib, [2.0, 3.0]))
    with pytest.raises(InvalidArgumentError, match="return"):
        symadj.odeint(lambda t, y: y[0], y0, _arr(lib, [0.0, 1.0]))


# -- output times -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("t", "message"),
    [
        ([0.0, 1.0, 0.5],
         r"strictly increasing or strictly decreasing; it goes up .* but t\[2\] = 0.5 follows t\[1\] = 1: sort it"),
        ([1.0, 0.0, 0.5], r"strictly decreasing; it goes down .* but t\[2\] = 0.5 follows t\[1\] = 0: sort it"),
        ([0.0, 0.0, 1.0], r"t is duplicated: t\[0\] = t\[1\] = 0; .* each time once. Drop the repeat"),
        ([0.0, 1.0, 1.0], r"t is duplicated: t\[1\] = t\[2\] = 1; output times must be strictly increasing"),
        ([2.0, 1.0, 1.0, 0.0], r"t is duplicated: t\[1\] = t\[2\] = 1;"),
        ([], r"at least one time .* got shape \(0,\)"),
        ([[0.0, 1.0]], r"must be 1-D .* got shape \(1, 2\)"),
        ([0.0, np.inf], "t contains NaN or infinity"),
    ],
    ids=["unsorted", "unsorted_down", "repeated_start", "repeated_end", "repeated_down", "empty", "2d", "inf"],
)
def test_bad_times_on_every_backend(lib, t, message):
    calls = []

    def func(t, y):
        calls.append(1)
        return -y

    with pytest.raises(InvalidArgumentError, match=message):
        symadj.odeint(func, _arr(lib, [1.0]), _arr(lib, t))
    assert calls == []


def test_a_single_time_gives_y0_without_calling_func_on_every_backend(lib):
    calls = []

    def func(t, y):
        calls.append(1)
        return -y

    ys = symadj.odeint(func, _arr(lib, [1.0, 2.0]), _arr(lib, [0.5]))
    assert tuple(ys.shape) == (1, 2) and calls == []
    assert [float(v) for v in ys[0]] == [1.0, 2.0]


def test_times_that_are_not_numbers():
    with pytest.raises(InvalidArgumentError, match="t must be a 1-D sequence of numbers"):
        symadj.odeint(lambda t, y: -y, np.ones(1), ["start", "end"])


# -- failed solves -----------------------------------------------------------------

def test_step_size_underflow_on_every_backend(lib):
    with pytest.raises(StepSizeUnderflowError, match=r"fell below min_step=0.0 .* at t=1\b.*stiff or singular"):
        _solve(lib, lambda t, y: y * y, y0=(1.0,), t=(0.0, 2.0))


def test_max_steps_on_every_backend(lib):
    with pytest.raises(MaxStepsError, match=r"max_steps=3 step attempts .* stopped at t=.* before t=100.*max_steps"):
        _solve(lib, lambda t, y: -y, t=(0.0, 100.0), options={"max_steps": 3})


# -- tolerances and options ---------------------------------------------------------

@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [0.0, -1e-6, np.nan, np.inf, True, "1e-6", None],
                         ids=["zero", "negative", "nan", "inf", "bool", "str", "none"])
def test_bad_tolerance_values(lib, name, value):
    with pytest.raises(InvalidArgumentError, match=rf"{name} must be a positive finite number"):
        _solve(lib, lambda t, y: -y, **{name: value})


@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_array_tolerances_are_checked_element_wise(lib, name):
    # A negative entry in an array tolerance once passed silently and accepted every step.
    with pytest.raises(InvalidArgumentError, match=rf"{name} must be positive and finite, got .*-1"):
        _solve(lib, lambda t, y: -y, **{name: _arr(lib, [1e-6, -1.0])})
    ys = _solve(lib, lambda t, y: -y, **{name: _arr(lib, [1e-8, 1e-9])})
    assert np.asarray(ys)[-1] == pytest.approx(np.exp(-1.0) * np.array([1.0, 2.0]), rel=1e-6)


def test_negative_traced_tolerance_under_jax_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    solve = jax.jit(lambda rtol: symadj.odeint(lambda t, y: -y, jnp.ones(1), jnp.array([0.0, 1.0]), rtol=rtol))
    assert float(solve(1e-6)[-1, 0]) == pytest.approx(np.exp(-1.0), rel=1e-5)
    with pytest.raises(Exception, match="InvalidArgumentError: rtol must be positive and finite, got -1"):
        jax.block_until_ready(solve(-1.0))


def test_duplicated_traced_times_under_jax_jit_name_the_repeat():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    solve = jax.jit(lambda ts: symadj.odeint(lambda t, y: -y, jnp.ones(1), ts))
    with pytest.raises(Exception, match=r"InvalidArgumentError: t is duplicated: t\[1\] = t\[2\] = 0.5;"):
        jax.block_until_ready(solve(jnp.array([0.0, 0.5, 0.5, 1.0])))


def test_unknown_options_are_listed(lib):
    with pytest.raises(UnknownNameError, match=r"unknown option 'maxsteps'; known: 'dfactor', 'first_step', "
                                               r"'ifactor', 'jump_t', 'land_on_outputs', 'max_step', 'max_steps', "
                                               r"'min_step', 'norm', 'pcoeff', 'perturb', 'safety', 'step_floor', "
                                               r"'step_size', 'step_t'"):
        _solve(lib, lambda t, y: -y, options={"maxsteps": 10})
    with pytest.raises(UnknownNameError) as caught:
        _solve(lib, lambda t, y: -y, options={"step": 0.1})
    assert caught.value.kind == "option" and "step_size" in caught.value.known


@pytest.mark.parametrize(
    ("options", "message"),
    [(["max_steps", 3], "options must be a dict, got list"), ({"max_steps": 3.5}, "positive integer, got 3.5"),
     ({"first_step": "0.1"}, "'first_step'.* positive number, got '0.1'"), ({"min_step": np.nan}, "min_step"),
     ({"ifactor": 0.5}, "ifactor"), ({"pcoeff": 1.0}, "pcoeff"), ({"norm": 3}, "norm")],
    ids=["list", "float_steps", "str_first_step", "nan_min_step", "ifactor", "pcoeff", "norm"],
)
def test_bad_option_values(options, message):
    with pytest.raises(InvalidArgumentError, match=message):
        symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 1.0], options=options)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [({"method": "rk5"}, UnknownNameError, "unknown method 'rk5'.*register_tableau"),
     ({"gradient": None}, UnknownNameError, "unknown gradient None"),
     ({"backend": "cupy"}, UnknownNameError, "unknown backend 'cupy'")],
    ids=["method_typo", "gradient_none", "backend"],
)
def test_unknown_names(kwargs, error, message):
    with pytest.raises(error, match=message):
        symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 1.0], **kwargs)


def test_empty_state_is_refused(lib):
    # An empty state once ran until max_steps (the RMS of nothing is NaN) and blamed max_steps.
    with pytest.raises(InvalidArgumentError, match=r"y0 has no elements .* at least one element"):
        _solve(lib, lambda t, y: -y, y0=())
    with pytest.raises(InvalidArgumentError, match="y0"):
        symadj.odeint(lambda t, y: y, (), _arr(lib, [0.0, 1.0]))


# -- tableau files ---------------------------------------------------------------

HEUN = 'name = "x"\norder = 2\nc = ["0", "1"]\na = [[], ["1"]]\nb = ["1/2", "1/2"]\n'
PARTNER = '[partner]\nb = ["1/2", "1/2"]\na = [["1/2", "-1/2"], ["1/2", "1/2"]]\n'
TABLEAU_FILES = {
    # file text, the message after "<file>: "
    "syntax_unclosed": ('name = "x\n', "not valid TOML"),
    "syntax_duplicate_key": (HEUN + "order = 3\n", "not valid TOML: Cannot overwrite a value"),
    "empty_file": ("", "missing required field 'name'"),
    "missing_b": (HEUN.replace('b = ["1/2", "1/2"]\n', ""), "missing required field 'b'"),
    "missing_partner_a": (HEUN + '[partner]\nb = ["1/2", "1/2"]\n', "missing field 'partner.a'"),
    "non_numeric_word": (HEUN.replace('"1/2", "1/2"', '"half", "1/2"'), r"'b\[0\]': 'half' is not a number"),
    "division_by_zero": (HEUN.replace('"1/2", "1/2"', '"1/0", "1/2"'), r"'b\[0\]': '1/0' is not a number"),
    "nan_coefficient": (HEUN.replace('"1/2", "1/2"', '"nan", "1/2"'), r"'b\[0\]': 'nan' is not a number"),
    "bool_coefficient": (HEUN.replace('"1/2", "1/2"', 'true, "1/2"'), r"'b\[0\]': True is not a number"),
    "table_coefficient": (HEUN.replace('"1/2", "1/2"', '{x = 1}, "1/2"'), r"'b\[0\]'.* write coefficients as"),
    "row_too_long": (HEUN.replace('[[], ["1"]]', '[[], ["1", "0"]]'), r"'a\[1\]' has 2 entries, expected 1"),
    "row_is_string": (HEUN.replace('[[], ["1"]]', '[[], "1"]'), r"'a\[1\]' has no entries, expected 1"),
    "too_many_rows": (HEUN.replace('[[], ["1"]]', '[[], ["1"], []]'), "'a' has 3 rows, expected 2"),
    "c_too_short": (HEUN.replace('c = ["0", "1"]', 'c = ["0"]'), "'c' has 1 entries, expected 2"),
    "order_lie": (HEUN.replace('"1/2", "1/2"', '"1", "0"'), "order-2 condition .* declared order 2 does not hold"),
    "order_beyond_stages": (HEUN.replace("order = 2", "order = 40"), "order is at most|order at most 2"),
    "order_as_string": (HEUN.replace("order = 2", 'order = "2"'), "'order' must be a positive integer, got '2'"),
    "embedded_order_lie": (HEUN + 'b_embedded = ["1", "0"]\nembedded_order = 2\n', "'b_embedded' violates the order-2"),
    "embedded_order_bool": (HEUN + 'b_embedded = ["1", "0"]\nembedded_order = true\n',
                            "order of 'b_embedded' must be a positive integer, got True"),
    "partner_weight_lie": (HEUN + PARTNER.replace('b = ["1/2", "1/2"]', 'b = ["1/2", "1/3"]'),
                           r"'partner.b\[1\]' = 1/3, expected 1/2"),
    "partner_matrix_lie": (HEUN + PARTNER.replace('["1/2", "1/2"]]', '["1/2", "1/3"]]'),
                           r"'partner.a\[1\]\[1\]' violates the symplecticity condition .* or omit \[partner\]"),
    "partner_not_a_table": (HEUN + "partner = 3\n", r"'partner' must be a table"),
    "fsal_as_string": (HEUN + 'fsal = "false"\n', "'fsal' must be true or false, got 'false'"),
    "fsal_lie": (HEUN + "fsal = true\n", "'fsal' is true but the last stage is not the next step's first"),
    "description_not_text": (HEUN + "description = 3\n", "'description' must be a string"),
    "dense_order_as_string": (HEUN + '[dense]\norder = "x"\nb = [["1/2"], ["1/2"]]\n',
                              "'dense.order' must be a positive integer"),
    "unknown_field": (HEUN + "weights = []\n", r"unknown field\(s\) \['weights'\]; valid fields"),
}


@pytest.mark.parametrize("case", sorted(TABLEAU_FILES))
def test_hostile_tableau_file(tmp_path, case):
    text, message = TABLEAU_FILES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    before = symadj.list_tableaux()
    with pytest.raises(TableauError, match=rf"{case}\.toml: .*{message}"):
        symadj.register_tableau(path)
    assert symadj.list_tableaux() == before  # nothing registered


def test_register_tableau_refuses_what_is_neither_tableau_nor_path():
    for value in (3, None, {"name": "x"}):
        with pytest.raises(InvalidArgumentError, match="a symadj.Tableau or the path of a TOML file"):
            symadj.register_tableau(value)


def test_tableau_in_code_with_a_bad_flag():
    with pytest.raises(TableauError, match="'fsal' must be true or false, got 1"):
        Tableau("heun_flag", c=[0, 1], a=[[], [1]], b=["1/2", "1/2"], order=2, fsal=1)


# -- plugins -------------------------------------------------------------------------

def _plugin(name, **hooks):
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, symadj.hookimpl(function))
    return module


def _registry(monkeypatch, *plugins):
    monkeypatch.setattr("symadj._plugins._plugin_sources", lambda: [(p.__name__, lambda p=p: p) for p in plugins])
    return Registry()


def _good(name="good"):
    return _plugin(name, symadj_register_tableaux=lambda: [shipped_tableaux_dir() / "rk4.toml"])


def _loaded(registry):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = registry.list_tableaux()
        registry.list_tableaux()
    return names, [str(w.message) for w in caught if issubclass(w.category, symadj.PluginLoadWarning)]


def _gen_failing_midway():
    yield shipped_tableaux_dir() / "euler.toml"
    raise RuntimeError("lost the second file")


@pytest.mark.parametrize(
    ("hook", "message"),
    [(lambda: 1 / 0, "failed to register: ZeroDivisionError: division by zero"),
     (lambda: 3, "failed to register: InvalidArgumentError: .* must return a list, got int"),
     (lambda: Tableau("lone", c=[0], a=[[]], b=[1], order=1), "must return a list, got Tableau"),
     (_gen_failing_midway, "failed to register: RuntimeError: lost the second file"),
     (lambda: [42], "a tableau must be a symadj.Tableau or a path to a TOML file, got int"),
     (lambda: ["/nonexistent/x.toml"], "cannot read the tableau file"),
     (lambda: [symadj.get_tableau("rk4")], "a tableau named 'rk4' is already registered")],
    ids=["raises", "returns_int", "returns_one_tableau", "generator_fails_midway", "returns_junk",
         "missing_file", "reenters_registry"],
)
def test_failing_plugin_is_reported_once_and_the_rest_load(monkeypatch, hook, message):
    registry = _registry(monkeypatch, _good(), _plugin("bad", symadj_register_tableaux=hook))
    monkeypatch.setattr(symadj, "registry", registry)  # a plugin calling symadj.get_tableau re-enters this one
    names, reported = _loaded(registry)
    assert names == ["rk4"]  # the good plugin loaded, nothing of the bad one (not even half a generator)
    assert len(reported) == 1 and len(registry.errors) == 1
    assert reported[0].startswith("plugin 'bad'")
    assert __import__("re").search(message, reported[0]), reported[0]


def test_two_plugins_registering_one_backend_name(monkeypatch):
    numpy_backend = symadj.get_backend("numpy")

    def info(label):
        return symadj.BackendInfo("shared", library="numpy", extra=f"symadj-{label}", array_modules=(),
                                  load=lambda: numpy_backend)

    registry = _registry(monkeypatch, _plugin("first", symadj_register_backends=lambda: [info("first")]),
                         _plugin("second", symadj_register_backends=lambda: [info("second")]))
    with pytest.warns(symadj.PluginLoadWarning, match="plugin 'second': a backend named 'shared' is already"):
        [status] = registry.list_backends()
    assert status.install == "pip install 'symadj-first'" and len(registry.errors) == 1
    with pytest.raises(DuplicateNameError, match="replace=True"):
        registry.register_backend(info("third"))


@pytest.mark.parametrize(("load", "message"), [
    (lambda: 1 / 0, "backend 'broken' failed to load: ZeroDivisionError"),
    (lambda: "not a backend", "returned a str, not a symadj.Backend"),
], ids=["raises", "returns_junk"])
def test_backend_whose_load_fails(monkeypatch, load, message):
    info = symadj.BackendInfo("broken", library="numpy", extra="symadj-broken", array_modules=(), load=load)
    registry = _registry(monkeypatch, _plugin("brokenplugin", symadj_register_backends=lambda: [info]))
    for _ in range(2):  # not cached as loaded, and the same clear error each time
        with pytest.raises(BackendUnavailableError, match=message):
            registry.get_backend("broken")


def test_every_error_here_is_a_symadj_error():
    for error in (BackendUnavailableError, DuplicateNameError, InvalidArgumentError, MaxStepsError, NonFiniteError,
                  StepSizeUnderflowError, TableauError, UnknownNameError, symadj.RecomputationError):
        assert issubclass(error, SymadjError)
    assert issubclass(symadj.RecomputationError, RuntimeError)
    assert issubclass(symadj.RecomputationWarning, symadj.SymadjWarning)


def test_tolerance_below_a_half_precision_state_on_every_backend(lib):
    y0 = make_array(lib, [1.0, 2.0])
    half = y0.astype("float16") if lib != "torch" else y0.half()
    with pytest.raises(InvalidArgumentError, match=r"rtol=1e-07 is below the resolution of float16 states"):
        symadj.odeint(lambda t, y: -y, half, _arr(lib, [0.0, 1.0]))
    ys = symadj.odeint(lambda t, y: -y, half, _arr(lib, [0.0, 1.0]), rtol=1e-3, atol=1e-3)
    assert abs(float(ys[-1][0]) - np.exp(-1.0)) < 1e-2


# -- gradient='adjoint' after a solve stopped early -----------------------------------------


def _stopped_early(gradient, y0, xp_linspace):
    return symadj.solve(lambda t, y: -y, y0, xp_linspace(0.0, 10.0, 5), gradient=gradient, throw=False,
                        options={"max_steps": 5})


def test_the_adjoint_after_a_solve_stopped_early_says_the_outputs_were_not_reached():
    torch = pytest.importorskip("torch")
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    sol = _stopped_early("adjoint", y0, lambda *a: torch.linspace(*a, dtype=torch.float64))
    assert not sol.success
    with pytest.raises(symadj.GradientNotSupportedError,
                       match=r"gradient='adjoint' cannot differentiate this solve: the forward solve stopped at "
                             r"t=\S+ \(MAX_STEPS, returned with throw=False\) before reaching output t\[1\] = 2.5, "
                             r"so the outputs from there on were never computed .* gradient='symplectic'"):
        sol.ys[:1].sum().backward()
    for mode in ("symplectic", "backprop"):  # the steps taken are differentiated
        y0.grad = None
        _stopped_early(mode, y0, lambda *a: torch.linspace(*a, dtype=torch.float64)).ys[:1].sum().backward()
        assert torch.equal(y0.grad, torch.ones(2, dtype=torch.float64))


def test_the_adjoint_after_a_solve_stopped_early_under_jax_jit():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    grad = jax.jit(jax.grad(lambda y0: jnp.sum(_stopped_early("adjoint", y0, jnp.linspace).ys[:1])))
    with pytest.raises(Exception, match=r"GradientNotSupportedError: gradient='adjoint' cannot differentiate this "
                                        r"solve: the forward solve stopped at .* before reaching output t\[1\]"):
        jax.block_until_ready(grad(jnp.ones(2)))
