"""Every shipped tableau carries a verified continuous extension of the order it declares.

The slope test steps each scheme once, independently of the engine, and measures the
interpolant against an exact solution; the mutation tests check that a broken ``[dense]``
section is refused with the file, the field and the condition.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import tomllib

from symadj import Tableau, TableauError
from symadj._cli import main
from symadj._tableau import INEXACT_TOLERANCE, DenseOutput
from symadj._tableaux_plugin import shipped_tableaux_dir

FILES = sorted(shipped_tableaux_dir().glob("*.toml"))

#: The order each shipped extension declares; all are free (no stage beyond the scheme's).
DENSE_ORDER = {
    "euler": 1, "midpoint": 2, "heun2": 2, "ralston2": 2, "heun_euler": 2, "fehlberg2": 2, "ssprk3": 2,
    "bosh3": 3, "rk4": 3, "rk38": 3, "cash_karp": 3, "dopri5": 4, "tsit5": 4, "dopri8": 6,
    "heun3": 2, "dopri87": 4,
}


def _data(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def _nudge(value: str, exact: bool) -> str:
    """1/7 added to a rational (exact or approximate); one unit of the 10th significant digit added to a decimal."""
    if exact or "." not in value:
        return str(Fraction(value) + Fraction(1, 7))
    number = Decimal(value)
    return str(number + Decimal(1).scaleb(number.adjusted() - 9))


def test_every_shipped_file_has_a_declared_dense_order():
    assert {path.stem for path in FILES} == set(DENSE_ORDER)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_shipped_dense_section_verifies_with_its_declared_order(path):
    assert "dense" in _data(path), f"{path.name} has no [dense] section"
    tab = Tableau.from_file(path)
    assert tab.dense_order == DENSE_ORDER[path.stem] <= tab.order
    assert tab.floats.dense == tuple(tuple(float(p) for p in row) for row in tab.dense.coefficients)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_interpolant_starts_with_the_slope_f0_and_fsal_ones_end_with_the_last_stage(path):
    # b_i'(0) = δ_i1, and for FSAL schemes b_i'(1) = δ_is: the dense output is C¹ across steps.
    tab = Tableau.from_file(path)
    tolerance = 0 if tab.exact else INEXACT_TOLERANCE
    s = tab.stages
    for i, row in enumerate(tab.dense.coefficients):
        assert abs(row[0] - (i == 0)) <= tolerance
        if tab.fsal:
            slope_at_one = sum((k * p for k, p in enumerate(row, start=1)), Fraction(0))
            assert abs(slope_at_one - (i == s - 1)) <= tolerance


# y0' = y0 y1, y1' = −y1² + ω cos ωt + sin² ωt: nonlinear, coupled, non-autonomous, with the entire
# solution y = (exp(−cos ωt / ω), sin ωt). Step sizes per dense order keep the smallest error ~1e-13
# or larger (far above rounding) and the largest in the asymptotic range.
OMEGA, T0 = 2.0, 0.3
SMALLEST_STEP = {1: 0.01, 2: 0.01, 3: 0.01, 4: 0.01, 6: 0.06}


def _field(t: float, y: np.ndarray) -> np.ndarray:
    return np.array([y[0] * y[1], -y[1] ** 2 + OMEGA * np.cos(OMEGA * t) + np.sin(OMEGA * t) ** 2])


def _exact(t: float) -> np.ndarray:
    return np.array([np.exp(-np.cos(OMEGA * t) / OMEGA), np.sin(OMEGA * t)])


def _interpolant_error(tab: Tableau, h: float, theta: float) -> float:
    """One explicit RK step from the exact y(T0), then |y0 + h Σ b_i(θ) k_i − y(T0 + θh)|∞."""
    c = [float(x) for x in tab.c]
    a = [[float(x) for x in row] for row in tab.a]
    y0 = _exact(T0)
    k: list[np.ndarray] = []
    for i in range(tab.stages):
        k.append(_field(T0 + c[i] * h, y0 + h * sum((a[i][j] * k[j] for j in range(i)), np.zeros(2))))
    weights = [sum(p * theta**n for n, p in enumerate(row, start=1)) for row in tab.floats.dense]
    interpolant = y0 + h * sum((w * ki for w, ki in zip(weights, k)), np.zeros(2))
    return float(np.max(np.abs(interpolant - _exact(T0 + theta * h))))


@pytest.mark.parametrize("theta", [0.3, 0.7])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_interpolant_local_error_has_slope_dense_order_plus_one(path, theta):
    tab = Tableau.from_file(path)
    steps = SMALLEST_STEP[tab.dense_order] * np.geomspace(1, 4, 5)
    errors = np.array([_interpolant_error(tab, h, theta) for h in steps])
    assert errors.min() > 1e-14, "the smallest step is down in rounding; the fit would mean nothing"
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope == pytest.approx(tab.dense_order + 1, abs=0.3)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_changed_dense_coefficient_breaks_b_at_one(path):
    data = _data(path)
    rows = data["dense"]["b"]
    i = max(index for index, row in enumerate(rows) if Fraction(row[-1]) != 0)
    rows[i][-1] = _nudge(rows[i][-1], Tableau.from_file(path).exact)
    with pytest.raises(TableauError, match=rf"{path.name}: field 'dense.b\[{i}\]' sums to .* at θ = 1, "
                                           rf"expected b\[{i}\] = .*\(the condition b_i\(1\) = b_i\)"):
        Tableau.from_mapping(data, source=str(path))


@pytest.mark.parametrize("path", [p for p in FILES if len(_data(p)["dense"]["b"][0]) > 1], ids=lambda p: p.stem)
def test_change_that_keeps_b_at_one_breaks_an_order_condition(path):
    # Moving weight from θ^d to θ keeps b_1(1) = b_1 but breaks Σ_i b_i(θ) = θ, the order-1 condition.
    data = _data(path)
    row = data["dense"]["b"][0]
    moved = Fraction(_nudge(row[-1], Tableau.from_file(path).exact)) - Fraction(row[-1])
    row[0], row[-1] = str(Fraction(row[0]) + moved), str(Fraction(row[-1]) - moved)
    with pytest.raises(TableauError, match=rf"{path.name}: field 'dense.b' violates the order-1 condition of "
                                           rf"rooted tree #0 at θ\^1 \(residual .*\); the declared dense order"):
        Tableau.from_mapping(data, source=str(path))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_dense_order_one_higher_is_refused(path):
    data = _data(path)
    dense = data["dense"]
    dense["order"] += 1
    for row in dense["b"]:
        row.append("0")  # so that the degree is not what fails
    order = data["order"]
    if dense["order"] > order:
        message = rf"field 'dense.order' is {dense['order']} but the scheme has order {order}"
    else:
        message = rf"field 'dense.b' violates the order-{dense['order']} condition of rooted tree #\d+ at θ\^\d"
    with pytest.raises(TableauError, match=rf"{path.name}: {message}"):
        Tableau.from_mapping(data, source=str(path))


def test_quadratic_extension_claimed_as_third_order_names_the_tree_and_power():
    data = _data(shipped_tableaux_dir() / "rk4.toml")
    b = [Fraction(x) for x in data["b"]]
    data["dense"] = {"order": 3, "b": [[str(int(i == 0)), str(bi - (i == 0)), "0"] for i, bi in enumerate(b)]}
    with pytest.raises(TableauError, match=r"rk4.toml: field 'dense.b' violates the order-3 condition of rooted "
                                           r"tree #2 at θ\^2 \(residual 0.167\)"):
        Tableau.from_mapping(data, source="rk4.toml")
    data["dense"]["order"] = 2
    assert Tableau.from_mapping(data).dense_order == 2


def test_degree_below_the_dense_order_is_refused():
    data = _data(shipped_tableaux_dir() / "rk4.toml")
    data["dense"]["order"] = 4
    with pytest.raises(TableauError, match=r"rk4.toml: field 'dense.b' has degree 3 but 'dense.order' is 4"):
        Tableau.from_mapping(data, source="rk4.toml")


@pytest.mark.parametrize("path", [p for p in FILES if len(_data(p)["b"]) > 1], ids=lambda p: p.stem)
def test_rows_of_unequal_length_are_refused(path):
    data = _data(path)
    rows = data["dense"]["b"]
    rows[-1].pop()
    with pytest.raises(TableauError, match=rf"{path.name}: field 'dense.b\[{len(rows) - 1}\]' has "
                                           rf"{len(rows[0]) - 1} entries, expected {len(rows[0])}"):
        Tableau.from_mapping(data, source=str(path))


def test_dense_output_given_in_code_is_verified_too():
    with pytest.raises(TableauError, match=r"'dense.b\[1\]' has 1 entries, expected 2"):
        Tableau("heun2", c=[0, 1], a=[[], [1]], b=["1/2", "1/2"], order=2,
                dense=DenseOutput(2, ((Fraction(1), Fraction(-1, 2)), (Fraction(1, 2),))))


def test_tableau_without_dense_output_has_none():
    tab = Tableau("heun2", c=[0, 1], a=[[], [1]], b=["1/2", "1/2"], order=2)
    assert tab.dense_order is None and tab.floats.dense is None


def test_cli_lists_the_dense_order_of_every_tableau(capsys):
    assert main(["tableaux"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:7] == ["name", "order", "stages", "FSAL", "adjoint", "VJPs", "dense"]
    columns = {line.split()[0]: line.split()[5] for line in lines[1:] if len(line.split()) > 5}
    for name, order in DENSE_ORDER.items():
        assert columns[name] == str(order)
    assert "with none ('-') the solver lands a step on every output time" in " ".join(lines)


def test_cli_verify_prints_the_dense_order(tmp_path, capsys):
    without = tmp_path / "plain.toml"
    without.write_text('name = "plain"\norder = 1\nc = ["0"]\na = [[]]\nb = ["1"]\n')
    assert main(["tableaux", "--verify", str(shipped_tableaux_dir() / "dopri8.toml"), str(without)]) == 0
    out = capsys.readouterr().out
    assert "dopri8, order 8, 13 stages, dense order 6" in out and "plain, order 1, 1 stages, dense order -" in out
