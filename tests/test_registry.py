"""The pluggy registry: discovery, registration, unknown and duplicate names, failing plugins."""

from __future__ import annotations

import inspect
import threading
import types
from pathlib import Path

import numpy as np
import pytest

import symadj
from symadj import hookspecs
from symadj._plugins import Registry
from symadj._tableaux_plugin import shipped_tableaux_dir

HEUN = """
name = "my_heun"
description = "Heun's method, registered by a user"
order = 2
c = ["0", "1"]
a = [[], ["1"]]
b = ["1/2", "1/2"]
"""


def _plugin(name, tableaux=None, backends=None, fail=False):
    module = types.ModuleType(name)

    if tableaux is not None:
        @symadj.hookimpl
        def symadj_register_tableaux():
            if fail:
                raise RuntimeError("broken plugin")
            return tableaux

        module.symadj_register_tableaux = symadj_register_tableaux
    if backends is not None:
        @symadj.hookimpl
        def symadj_register_backends():
            return backends

        module.symadj_register_backends = symadj_register_backends
    return module


def _registry(monkeypatch, *plugins):
    monkeypatch.setattr("symadj._plugins._plugin_sources",
                        lambda: [(p.__name__, lambda p=p: p) for p in plugins])
    return Registry()


def test_builtin_plugins_come_from_entry_points():
    import importlib.metadata

    names = {ep.name for ep in importlib.metadata.entry_points(group="symadj")}
    assert {"tableaux", "numpy", "torch", "jax"} <= names
    assert {"numpy", "torch", "jax"} <= {b.name for b in symadj.list_backends()}
    assert symadj.plugin_errors() == []


def test_unknown_tableau_lists_what_exists():
    with pytest.raises(symadj.UnknownNameError, match=r"unknown method 'nope'; known: .*'rk4'"):
        symadj.get_tableau("nope")


def test_user_file_and_code_tableaux_register_and_solve(tmp_path, monkeypatch):
    import symadj_numpy.plugin

    registry = _registry(monkeypatch, symadj_numpy.plugin)
    path = tmp_path / "my_heun.toml"
    path.write_text(HEUN)
    monkeypatch.setattr(symadj, "registry", registry)
    monkeypatch.setattr("symadj._api.registry", registry)
    monkeypatch.setattr("symadj._arguments.registry", registry)
    symadj.register_tableau(path)
    in_code = symadj.Tableau("my_ralston", c=[0, "2/3"], a=[[], ["2/3"]], b=["1/4", "3/4"], order=2)
    symadj.register_tableau(in_code)
    assert {"my_heun", "my_ralston"} <= set(registry.list_tableaux())
    for method in ("my_heun", "my_ralston"):
        ys = symadj.odeint(lambda t, y: -y, np.ones(1), np.linspace(0, 1, 101), method=method)
        assert ys[-1, 0] == pytest.approx(np.exp(-1), rel=1e-4)


def test_duplicate_tableau_name_needs_replace(monkeypatch):
    registry = _registry(monkeypatch)
    tab = symadj.Tableau("twice", c=[0], a=[[]], b=[1], order=1)
    registry.register_tableau(tab)
    with pytest.raises(symadj.DuplicateNameError, match="replace=True"):
        registry.register_tableau(tab)
    registry.register_tableau(tab, replace=True)
    assert registry.get_tableau("twice") is tab


def test_bad_user_file_is_rejected_at_registration(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(HEUN.replace('"1/2", "1/2"', '"1/2", "1/3"'))
    with pytest.raises(symadj.TableauError, match="bad.toml"):
        symadj.register_tableau(path)


def test_failing_plugin_is_reported_once_and_the_rest_load(monkeypatch):
    good = _plugin("good", tableaux=[shipped_tableaux_dir() / "rk4.toml"])
    bad = _plugin("bad", tableaux=[], fail=True)
    registry = _registry(monkeypatch, bad, good)
    with pytest.warns(symadj.PluginLoadWarning, match="plugin 'bad' failed to register: RuntimeError"):
        assert registry.list_tableaux() == ["rk4"]
    assert len(registry.errors) == 1
    registry.list_tableaux()
    assert len(registry.errors) == 1


def test_two_plugins_registering_one_name(monkeypatch):
    first = _plugin("first", tableaux=[shipped_tableaux_dir() / "rk4.toml"])
    second = _plugin("second", tableaux=[symadj.Tableau("rk4", c=[0], a=[[]], b=[1], order=1)])
    registry = _registry(monkeypatch, first, second)
    with pytest.warns(symadj.PluginLoadWarning, match="plugin 'second': a tableau named 'rk4' is already"):
        assert registry.get_tableau("rk4").stages == 4


def test_plugin_that_fails_to_import(monkeypatch):
    def broken():
        raise ImportError("no such module")

    monkeypatch.setattr("symadj._plugins._plugin_sources", lambda: [("broken", broken)])
    registry = Registry()
    with pytest.warns(symadj.PluginLoadWarning, match="plugin 'broken' failed to load"):
        assert registry.list_tableaux() == []


def test_backend_with_missing_library_is_listed_with_its_extra(monkeypatch):
    info = symadj.BackendInfo("ghost", library="ghost_arrays_lib", extra="symadj[ghost]",
                              array_modules=("ghost",), load=lambda: None)
    registry = _registry(monkeypatch, _plugin("ghosts", backends=[info]))
    [status] = registry.list_backends()
    assert not status.available and status.install == "pip install 'symadj[ghost]'"
    with pytest.raises(symadj.BackendUnavailableError, match=r"pip install 'symadj\[ghost\]'"):
        registry.get_backend("ghost")
    with pytest.raises(symadj.UnknownNameError, match=r"unknown backend 'spirit'; known: 'ghost'"):
        registry.get_backend("spirit")


def test_backend_follows_the_type_of_y0():
    assert symadj.registry.backend_for([np.ones(1)]).name == "numpy"
    with pytest.raises(symadj.InvalidArgumentError, match="no backend handles arrays of type"):
        symadj.odeint(lambda t, y: y, [1.0], [0.0, 1.0])


def test_registry_is_thread_safe(monkeypatch):
    registry = _registry(monkeypatch, _plugin("shipped", tableaux=sorted(shipped_tableaux_dir().glob("*.toml"))))
    errors = []

    def work(index):
        try:
            for _ in range(20):
                registry.get_tableau("dopri5")
                registry.register_tableau(symadj.Tableau(f"t{index}", c=[0], a=[[]], b=[1], order=1), replace=True)
                registry.list_tableaux()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {f"t{i}" for i in range(8)} <= set(registry.list_tableaux())


def test_verifying_a_file_does_not_hold_the_registry(monkeypatch, tmp_path):
    """While one thread verifies a plugin's file, other threads' look-ups go on."""
    path = tmp_path / "my_heun.toml"
    path.write_text(HEUN)
    registry = _registry(monkeypatch, _plugin("shipped", tableaux=[*sorted(shipped_tableaux_dir().glob("*.toml")),
                                                                    path]))
    registry.get_tableau("rk4")
    verifying, release = threading.Event(), threading.Event()
    from_file = symadj.Tableau.from_file

    def slow_from_file(source):
        if Path(source) == path:
            verifying.set()
            release.wait(10)
        return from_file(source)

    monkeypatch.setattr(symadj.Tableau, "from_file", staticmethod(slow_from_file))
    got = {}
    slow = threading.Thread(target=lambda: got.update(slow=registry.get_tableau("my_heun")))
    slow.start()
    assert verifying.wait(10)
    others = threading.Thread(target=lambda: got.update(others=(registry.get_tableau("rk4"),
                                                                registry.get_tableau("dopri5"),
                                                                registry.list_tableaux())))
    others.start()
    others.join(5)
    finished_while_verifying = not others.is_alive()
    release.set()
    slow.join(10)
    others.join(10)
    assert finished_while_verifying
    assert got["slow"].name == "my_heun" and got["others"][1].name == "dopri5"
    assert registry.get_tableau("my_heun") is got["slow"]  # verified once, then kept


def test_every_hookspec_is_documented():
    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("symadj_")]
    assert specs
    for name in specs:
        assert f"`{name}`" in docs, f"hook {name} is not documented in docs/plugins.md"


def test_public_modules_come_from_the_plugin_that_declares_them(monkeypatch):
    implementation = types.ModuleType("my_plugin_wrappers")
    implementation.Wrapper = object
    monkeypatch.setitem(__import__("sys").modules, "my_plugin_wrappers", implementation)

    def info(library):
        return symadj.BackendInfo("mine", library=library, extra="symadj-mine", array_modules=(), load=lambda: None,
                                  modules=(("wrappers", "my_plugin_wrappers"),))

    found = _registry(monkeypatch, _plugin("p", backends=[info("numpy")])).plugin_module("wrappers")
    assert found is implementation
    missing = _registry(monkeypatch, _plugin("p", backends=[info("no_such_array_library")]))
    with pytest.raises(symadj.BackendUnavailableError, match=r"wrappers needs no_such_array_library.*symadj-mine"):
        missing.plugin_module("wrappers")
    with pytest.raises(symadj.BackendUnavailableError, match="no installed plugin provides it"):
        _registry(monkeypatch, _plugin("p", backends=[])).plugin_module("wrappers")
