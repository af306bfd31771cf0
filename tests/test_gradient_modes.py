"""Gradient modes are small frozen values: equal when their settings are, hashable, shown
by the settings that differ from their defaults, and solved through one entry point."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from pathlib import Path

import pytest

import symadj
from symadj import GradientMode, as_gradient_mode

MODES = [symadj.Backprop, symadj.Symplectic, symadj.CheckpointedBackprop, symadj.ContinuousAdjoint, symadj.Reversible]
SETTINGS = [
    (symadj.Backprop, {}, "Backprop()"),
    (symadj.Symplectic, {}, "Symplectic()"),
    (symadj.Symplectic, {"checkpoints": "revolve:3"}, "Symplectic(checkpoints=Revolve(budget=3))"),
    (symadj.Symplectic, {"memory": "1MiB"}, "Symplectic(checkpoints=Auto(memory='1MiB'))"),
    (symadj.CheckpointedBackprop, {}, "CheckpointedBackprop()"),
    (symadj.CheckpointedBackprop, {"checkpoints": "all", "recomputation": "warn"},
     "CheckpointedBackprop(checkpoints=AllSteps(), recomputation='warn')"),
    (symadj.ContinuousAdjoint, {}, "ContinuousAdjoint()"),
    (symadj.ContinuousAdjoint, {"rtol": 1e-6, "options": {"norm": "seminorm"}},
     "ContinuousAdjoint(rtol=1e-06, options={'norm': 'seminorm'})"),
    (symadj.Reversible, {}, "Reversible()"),
    (symadj.Reversible, {"coupling": 0.99}, "Reversible(coupling=0.99)"),
]


@pytest.mark.parametrize(("mode", "settings", "shown"), SETTINGS, ids=[shown for _, _, shown in SETTINGS])
def test_modes_are_equal_hashable_and_readable(mode, settings, shown):
    a, b = mode(**settings), mode(**settings)
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert repr(a) == shown
    assert eval(shown, vars(symadj)) == a  # the repr builds the same mode


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.__name__)
def test_a_name_gives_the_default_mode(mode):
    assert as_gradient_mode(mode.name) == mode()
    assert all(mode() != other() for other in MODES if other is not mode)


def test_modes_differ_by_their_settings_and_their_kind():
    assert symadj.Symplectic(checkpoints="revolve:3") == symadj.Symplectic(checkpoints=symadj.Revolve(budget=3))
    assert symadj.Symplectic(checkpoints="revolve:3") != symadj.Symplectic(checkpoints="revolve:4")
    assert symadj.Symplectic(checkpoints="all") != symadj.CheckpointedBackprop(checkpoints="all")
    assert symadj.CheckpointedBackprop(recomputation="off") != symadj.CheckpointedBackprop()
    assert symadj.ContinuousAdjoint(options={"max_steps": 3}) != symadj.ContinuousAdjoint(options={"max_steps": 4})
    assert symadj.ContinuousAdjoint(rtol=1e-6) != symadj.ContinuousAdjoint()


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.__name__)
def test_modes_are_frozen_dataclasses(mode):
    instance = mode()
    assert dataclasses.is_dataclass(instance) and type(instance).__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        instance.name = "other"
    for setting in dataclasses.fields(instance):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(instance, setting.name, None)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.__name__)
def test_modes_share_one_solve_signature(mode):
    def shape(solve):
        return [(p.name, p.default) for p in inspect.signature(solve).parameters.values()]

    assert shape(mode._solve) == shape(GradientMode._solve)


RENAMED = [("Checkpoint", symadj.CheckpointedBackprop, "checkpoint"),
           ("Adjoint", symadj.ContinuousAdjoint, "adjoint")]
API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.mark.parametrize(("old", "mode", "name"), RENAMED, ids=[old for old, _, _ in RENAMED])
def test_the_renamed_modes_are_exported_and_documented_under_their_new_names(old, mode, name):
    new = mode.__name__
    assert new in symadj.__all__ and old not in symadj.__all__
    assert f"::: symadj.{new}\n" in API_PAGE.read_text(encoding="utf-8")
    assert mode.name == name and type(as_gradient_mode(name)) is mode


@pytest.mark.parametrize(("old", "mode", "name"), RENAMED, ids=[old for old, _, _ in RENAMED])
def test_an_old_name_gives_the_same_class_with_a_warning_at_each_access(old, mode, name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = getattr(symadj, old), getattr(symadj, old)
    assert first is second is mode
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
    assert all(f"symadj.{old} is deprecated" in str(w.message) and f"symadj.{mode.__name__}" in str(w.message)
               for w in caught)
    assert caught[0].filename == __file__  # the warning points at the caller
    with pytest.warns(DeprecationWarning, match=mode.__name__):
        old_class = getattr(symadj, old)
    instance = old_class()
    assert isinstance(instance, mode) and isinstance(mode(), old_class) and isinstance(instance, GradientMode)
    assert instance == mode()


def test_from_import_of_an_old_name_warns_and_unknown_names_still_fail():
    with pytest.warns(DeprecationWarning, match="CheckpointedBackprop"):
        from symadj import Checkpoint
    assert Checkpoint is symadj.CheckpointedBackprop
    with pytest.raises(AttributeError, match="no attribute 'Checkpointed'"):
        symadj.Checkpointed  # noqa: B018
