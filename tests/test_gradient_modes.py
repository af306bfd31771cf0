"""Gradient modes are small frozen values: equal when their settings are, hashable, shown
by the settings that differ from their defaults, and solved through one entry point."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import symadj
from symadj._gradients import GradientMode, as_gradient_mode

MODES = [symadj.Backprop, symadj.Symplectic, symadj.Checkpoint, symadj.Adjoint]
SETTINGS = [
    (symadj.Backprop, {}, "Backprop()"),
    (symadj.Symplectic, {}, "Symplectic()"),
    (symadj.Symplectic, {"checkpoints": "revolve:3"}, "Symplectic(checkpoints=Revolve(budget=3))"),
    (symadj.Symplectic, {"memory": "1MiB"}, "Symplectic(checkpoints=Auto(memory='1MiB'))"),
    (symadj.Checkpoint, {}, "Checkpoint()"),
    (symadj.Checkpoint, {"checkpoints": "all", "recomputation": "warn"},
     "Checkpoint(checkpoints=AllSteps(), recomputation='warn')"),
    (symadj.Adjoint, {}, "Adjoint()"),
    (symadj.Adjoint, {"rtol": 1e-6, "options": {"norm": "seminorm"}},
     "Adjoint(rtol=1e-06, options={'norm': 'seminorm'})"),
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
    assert symadj.Symplectic(checkpoints="all") != symadj.Checkpoint(checkpoints="all")
    assert symadj.Checkpoint(recomputation="off") != symadj.Checkpoint()
    assert symadj.Adjoint(options={"max_steps": 3}) != symadj.Adjoint(options={"max_steps": 4})
    assert symadj.Adjoint(rtol=1e-6) != symadj.Adjoint()


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
