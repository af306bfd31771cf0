"""Tableau files verify exactly; broken ones are rejected with the file, field and condition."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import tomllib
from conftest import SHIPPED

import symadj
from symadj import Tableau, TableauError
from symadj._order import order_condition_residuals, rooted_trees
from symadj._tableau import derive_partner
from symadj._tableaux_plugin import shipped_tableaux_dir

FILES = sorted(shipped_tableaux_dir().glob("*.toml"))


def _data(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def _shift(value: str, amount: Fraction = Fraction(1, 7)) -> str:
    return str(Fraction(value) + amount)


def test_rooted_tree_counts_match_the_literature():
    trees = rooted_trees(8)
    counts = [trees.order.count(n) for n in range(1, 9)]
    assert counts == [1, 1, 2, 4, 9, 20, 48, 115]


def test_classic_rk4_is_order_four_and_not_five():
    a = [[], [Fraction(1, 2)], [0, Fraction(1, 2)], [0, 0, 1]]
    b = [Fraction(1, 6), Fraction(1, 3), Fraction(1, 3), Fraction(1, 6)]
    residuals = {order: [] for order in range(1, 6)}
    for _, order, residual in order_condition_residuals(a, b, 5):
        residuals[order].append(residual)
    assert all(r == 0 for order in range(1, 5) for r in residuals[order])
    assert any(r != 0 for r in residuals[5])


def test_every_required_scheme_is_shipped():
    assert set(SHIPPED) <= {path.stem for path in FILES}
    assert set(SHIPPED) <= set(symadj.list_tableaux())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_shipped_file_verifies_and_declares_its_partner(path):
    data = _data(path)
    tab = Tableau.from_file(path)
    assert tab.name == path.stem
    assert "partner" in data, "every shipped file declares its symplectic partner"
    assert tab.partner == derive_partner(tab.a, tab.b)
    assert tab.description


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_changed_weight_breaks_an_order_condition(path):
    data = _data(path)
    data["b"][0] = _shift(data["b"][0])
    data.pop("error", None)
    data.get("secondary_error", {}).pop("error", None)
    with pytest.raises(TableauError, match=rf"{path.name}.*field 'b' violates the order-1 condition"):
        Tableau.from_mapping(data, source=str(path))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_changed_partner_entry_breaks_symplecticity(path):
    data = _data(path)
    data["partner"]["a"][0][0] = _shift(data["partner"]["a"][0][0])
    with pytest.raises(TableauError, match=rf"{path.name}.*'partner.a\[0\]\[0\]'.*symplecticity"):
        Tableau.from_mapping(data, source=str(path))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_broken_row_sum_is_rejected(path):
    data = _data(path)
    row = len(data["c"]) - 1
    data["c"][row] = _shift(data["c"][row], Fraction(1, 3))
    with pytest.raises(TableauError, match=rf"{path.name}.*'c\[{row}\]'.*row sums of a must equal c"):
        Tableau.from_mapping(data, source=str(path))


@pytest.mark.parametrize("path", [p for p in FILES if "b_embedded" in _data(p)], ids=lambda p: p.stem)
def test_error_weights_stored_in_place_of_embedded_weights_are_caught(path):
    # The official code's fehlberg2 stores b_embedded where the error weights belong.
    data = _data(path)
    b = [Fraction(x) for x in data["b"]]
    b_hat = [Fraction(x) for x in data["b_embedded"]]
    data["b_embedded"] = [str(x - y) for x, y in zip(b, b_hat)]
    data.pop("error", None)
    with pytest.raises(TableauError, match=rf"{path.name}.*field 'b_embedded' violates"):
        Tableau.from_mapping(data, source=str(path))


@pytest.mark.parametrize("path", [p for p in FILES if "error" in _data(p)], ids=lambda p: p.stem)
def test_stated_error_weights_must_be_b_minus_b_embedded(path):
    data = _data(path)
    data["error"][-1] = _shift(data["error"][-1])
    with pytest.raises(TableauError, match=r"error weights must be b − b_embedded"):
        Tableau.from_mapping(data, source=str(path))


def test_file_without_partner_gets_the_derived_one(tmp_path):
    source = _data(shipped_tableaux_dir() / "dopri5.toml")
    declared = Tableau.from_mapping(source)
    del source["partner"]
    derived = Tableau.from_mapping(source)
    assert derived.partner == declared.partner


def test_dopri5_adjoint_skips_only_the_fsal_stage():
    tab = symadj.get_tableau("dopri5")
    assert tab.fsal and tab.b[1] == 0 and tab.b[6] == 0
    # Stage 2 has zero weight but later stages use it: it still needs its VJP.
    assert tab.adjoint.active == (True,) * 6 + (False,)
    assert tab.partner.b[1] == 1 and tab.adjoint.input_weight[1] == 0.0


def test_dopri8_has_both_error_estimates():
    tab = symadj.get_tableau("dopri8")
    assert tab.order == 8 and tab.embedded_order == 5 and tab.secondary.order == 3
    assert tab.fsal and not tab.adjoint.active[-1]


def test_rk4_is_classic_and_rk38_is_the_three_eighths_rule():
    assert symadj.get_tableau("rk4").c == (0, Fraction(1, 2), Fraction(1, 2), 1)
    assert symadj.get_tableau("rk38").c == (0, Fraction(1, 3), Fraction(2, 3), 1)


def test_tableau_built_in_code_with_floats_is_checked_to_tolerance():
    tab = Tableau("heun_float", c=[0.0, 1.0], a=[[], [1.0]], b=[0.5, 0.5], order=2)
    assert not tab.exact and tab.partner.b == (Fraction(1, 2), Fraction(1, 2))
    with pytest.raises(TableauError, match="order-2 condition"):
        Tableau("bad", c=[0.0, 1.0], a=[[], [1.0]], b=[0.25, 0.75], order=2)


def test_fsal_claim_is_checked():
    with pytest.raises(TableauError, match="'fsal' is true"):
        Tableau("heun_fsal", c=[0, 1], a=[[], [1]], b=["1/2", "1/2"], order=2, fsal=True)


MALFORMED = {
    "syntax": ('name = "x"\norder = \n', r"not valid TOML"),
    "missing": ('name = "x"\norder = 1\nc = ["0"]\nb = ["1"]\n', r"missing required field 'a'"),
    "non_numeric": ('name = "x"\norder = 1\nc = ["0"]\na = [[]]\nb = ["one"]\n',
                    r"field 'b\[0\]': 'one' is not a number"),
    "float": ('name = "x"\norder = 1\nc = ["0"]\na = [[]]\nb = [1.0]\n', r"write coefficients as strings"),
    "row_length": ('name = "x"\norder = 1\nc = ["0", "1"]\na = [[], ["1", "0"]]\nb = ["1/2", "1/2"]\n',
                   r"'a\[1\]' has 2 entries, expected 1 \(row i of a has i entries\)"),
    "unknown": ('name = "x"\norder = 1\nc = ["0"]\na = [[]]\nb = ["1"]\nweights = []\n',
                r"unknown field\(s\) \['weights'\]"),
    "order_lie": ('name = "x"\norder = 2\nc = ["0", "1"]\na = [[], ["1"]]\nb = ["1", "0"]\n',
                  r"order-2 condition .* declared order 2 does not hold"),
    "order_beyond_stages": ('name = "x"\norder = 99\nc = ["0"]\na = [[]]\nb = ["1"]\n',
                            r"field 'order' is 99 but an explicit scheme with 1 stages has order at most 1"),
    "partner_shape": ('name = "x"\norder = 1\nc = ["0"]\na = [[]]\nb = ["1"]\n[partner]\nb = ["1"]\na = [[]]\n',
                      r"'partner.a\[0\]' has 0 entries, expected 1"),
    "embedded_alone": ('name = "x"\norder = 1\nc = ["0"]\na = [[]]\nb = ["1"]\nb_embedded = ["1"]\n',
                       r"missing field 'embedded_order'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_file_and_field(tmp_path, case):
    text, message = MALFORMED[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(TableauError, match=rf"{case}.toml: .*{message}"):
        Tableau.from_file(path)


def test_missing_file_is_a_tableau_error(tmp_path):
    with pytest.raises(TableauError, match="cannot read"):
        Tableau.from_file(tmp_path / "absent.toml")


# -- bounded verification ------------------------------------------------------------------


def _zero_stages(stages: int, order: int) -> str:
    zeros = ", ".join(['"0"'] * stages)
    rows = ", ".join("[" + ", ".join(['"0"'] * i) + "]" for i in range(stages))
    return f'name = "zeros"\norder = {order}\nc = [{zeros}]\na = [{rows}]\nb = [{zeros}]\n'


@pytest.mark.parametrize("stages, order", [(15, 15), (20, 20), (22, 22), (15, 12), (20, 12), (12, 9)])
def test_a_false_high_order_is_refused_in_under_a_second(tmp_path, stages, order):
    import time

    from symadj._tableau import MAX_ORDER

    path = tmp_path / "zeros.toml"
    path.write_text(_zero_stages(stages, order))
    start = time.perf_counter()
    message = (rf"zeros.toml: field 'order' is {order}, above the highest order symadj verifies \({MAX_ORDER}\)"
               if order > MAX_ORDER else r"zeros.toml: field 'b' violates the order-1 condition")
    with pytest.raises(TableauError, match=message):
        Tableau.from_file(path)
    assert time.perf_counter() - start < 1.0


def test_order_conditions_are_checked_order_by_order():
    """A scheme failing at order 2 never has the trees of order 3 and above built."""
    from symadj import _order

    _order.rooted_trees.cache_clear()
    a = [[], [Fraction(1)]]
    failing = next(order for _, order, residual in _order.order_condition_residuals(a, [Fraction(1), Fraction(0)], 11)
                   if residual != 0)
    assert failing == 2
    misses = _order.rooted_trees.cache_info().misses
    _order.rooted_trees(11)
    assert _order.rooted_trees.cache_info().misses == misses + 9  # orders 3 to 11 were not built before


@pytest.mark.parametrize("field, value, where", [
    ("b", '["1e10000000"]', r"field 'b\[0\]'"),
    ("b", '["1e-401"]', r"field 'b\[0\]'"),
    ("c", '["' + "1" * 1001 + '"]', r"field 'c\[0\]'"),
    ("b", '["' + "1/" + "3" * 1000 + '"]', r"field 'b\[0\]'"),
])
def test_huge_coefficients_are_refused_naming_file_and_field(tmp_path, field, value, where):
    import time

    lines = {"name": '"huge"', "order": "1", "c": '["0"]', "a": "[[]]", "b": '["1"]', field: value}
    path = tmp_path / "huge.toml"
    path.write_text("\n".join(f"{key} = {text}" for key, text in lines.items()) + "\n")
    start = time.perf_counter()
    with pytest.raises(TableauError, match=rf"huge.toml: {where}: .* too large a coefficient"):
        Tableau.from_file(path)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(TableauError, match="too large a coefficient"):
        Tableau("huge", c=[0], a=[[]], b=[10**2000], order=1)


def test_a_declared_order_above_the_cap_is_refused_for_every_order_field():
    from symadj._tableau import MAX_ORDER

    stages = MAX_ORDER + 2
    zeros = [0] * stages
    rows = [[0] * i for i in range(stages)]
    with pytest.raises(TableauError, match=rf"'order of b_embedded' is {MAX_ORDER + 1}, above"):
        Tableau("x", c=zeros, a=rows, b=[1, *zeros[1:]], order=1, embedded=(MAX_ORDER + 1, zeros))
    with pytest.raises(TableauError, match=rf"'dense.order' is {MAX_ORDER + 1}, above"):
        Tableau("x", c=zeros, a=rows, b=[1, *zeros[1:]], order=1, dense=(MAX_ORDER + 1, [[0]] * stages))
