"""Butcher tableaux as verified, immutable data, and their symplectic partners.

Coefficients are held as exact :class:`fractions.Fraction` values. A tableau is
verified when it is built: shapes, row sums, every rooted-tree order condition up
to the declared order, the embedded estimates, FSAL, dense output, and the
symplectic partner that the adjoint step integrates with.

The partner (see docs/tableau-format.md): with B_i = b_i where b_i != 0 and
B_i = 1 where b_i == 0, it satisfies  B_i Ā_ij + B_j a_ji − b_i B_j = 0  for all
i, j. Where b_i != 0 this is the classical symplecticity condition; a zero-weight
stage carries its cotangent unscaled, so no partner coefficient depends on h.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Union

import tomllib

from ._order import dense_condition_residuals, order_condition_residuals
from .errors import TableauError

Coefficient = Union[str, int, float, Fraction]

#: Residual allowed in the conditions of tableaux whose coefficients are decimal approximations.
INEXACT_TOLERANCE = Fraction(1, 10**14)

#: Highest order a tableau (its solution, embedded estimates and dense output) may declare:
#: the rooted trees whose conditions are checked grow exponentially with it (7813 trees up
#: to order 12, 12.8 million up to 20), and the checks with them.
MAX_ORDER = 12

#: Longest coefficient written as a string (dopri8's longest rational has 343 characters),
#: and the largest decimal exponent in one: ``"1e10000000"`` would build a ten-million-digit
#: integer before any check could run.
MAX_COEFFICIENT_CHARACTERS = 1000
MAX_COEFFICIENT_EXPONENT = 400


@dataclass(frozen=True)
class EmbeddedEstimate:
    """An embedded solution of lower order; its error weights are ``b − b_embedded``."""

    order: int
    b_embedded: tuple[Fraction, ...]
    error: tuple[Fraction, ...]


@dataclass(frozen=True)
class DenseOutput:
    """Continuous extension: ``b_i(θ) = Σ_k coefficients[i][k-1] θ^k``, every row of one length (the degree).

    The interpolant over a step is y(t0 + θh) = y0 + h Σ_i b_i(θ) k_i, with b_i(1) = b_i; it has order
    ``order`` when its local error is O(h^(order+1)) uniformly in θ ∈ [0, 1].
    """

    order: int
    coefficients: tuple[tuple[Fraction, ...], ...]


@dataclass(frozen=True)
class Partner:
    """The symplectic partner: weights ``b`` (B_i) and the full s×s matrix ``a`` (Ā)."""

    b: tuple[Fraction, ...]
    a: tuple[tuple[Fraction, ...], ...]


@dataclass(frozen=True)
class AdjointCoefficients:
    """The partner's coefficients as the adjoint step uses them, in floating point.

    The partner scheme carries X_i = e_i λ' + h Σ_{j>i} Â_ij ℓ_j (Â_ij = e_i B_j − Ā_ij),
    ℓ_i = J_iᵀ X_i and λ_n = λ' + h Σ B_i ℓ_i. The step works with the scaled stage
    cotangent κ_i = h B_i X_i and μ_i = J_iᵀ κ_i = h B_i ℓ_i, so that the vector–Jacobian
    products return what is summed, with no scaling of parameter-sized arrays:
    κ_i = h (input_weight_i λ' + Σ_{j>i} coupling[i][j] μ_j), λ_n = λ' + Σ_i μ_i.
    Stages that are not ``active`` receive no cotangent and need no product.
    """

    input_weight: tuple[float, ...]  # B_i e_i
    coupling: tuple[tuple[float, ...], ...]  # B_i Â_ij / B_j
    active: tuple[bool, ...]


def _parse_coefficient(value: Any, where: str) -> tuple[Fraction, bool]:
    """Return the exact value and whether it is exactly what the literature means (a rational)."""
    if isinstance(value, bool):
        raise TableauError(f"{where}: {value!r} is not a number")
    if isinstance(value, (int, Fraction)):
        number = Fraction(value)
        if max(number.numerator.bit_length(), number.denominator.bit_length()) > _MAX_COEFFICIENT_BITS:
            raise TableauError(f"{where}: {_too_large(value)}")
        return number, True
    if isinstance(value, float):
        return Fraction(value), False
    if isinstance(value, str):
        text = value.strip()
        exponent = _EXPONENT.search(text)
        if len(text) > MAX_COEFFICIENT_CHARACTERS or (
                exponent is not None and abs(int(exponent.group(1))) > MAX_COEFFICIENT_EXPONENT):
            raise TableauError(f"{where}: {_too_large(value)}")
        try:
            number = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise TableauError(
                f"{where}: {value!r} is not a number; write an integer, a rational such as "
                f"'35/384' or a decimal such as '0.161'"
            ) from None
        return number, not any(ch in text for ch in ".eE")
    raise TableauError(
        f"{where}: {value!r} is a {type(value).__name__}; write coefficients as strings"
    )


_EXPONENT = re.compile(r"[eE]\s*([+-]?\d+)")
# A string of MAX_COEFFICIENT_CHARACTERS digits, in bits.
_MAX_COEFFICIENT_BITS = math.ceil(MAX_COEFFICIENT_CHARACTERS * math.log2(10))


def _too_large(value: Any) -> str:
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
    return (f"{shown} is too large a coefficient (at most {MAX_COEFFICIENT_CHARACTERS} characters and a decimal "
            f"exponent of at most {MAX_COEFFICIENT_EXPONENT} in magnitude); write the rational or decimal the "
            f"scheme means")


def _check_order_cap(where: str, field: str, order: int) -> None:
    if order > MAX_ORDER:
        raise TableauError(
            f"{where}: field {field!r} is {order}, above the highest order symadj verifies ({MAX_ORDER}): the "
            f"order conditions grow exponentially with it; declare an order of at most {MAX_ORDER}"
        )


class _Parser:
    """Turns raw coefficient lists into Fractions, remembering whether any was inexact."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.exact = True

    def vector(self, values: Any, name: str, length: int | None = None) -> tuple[Fraction, ...]:
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise TableauError(f"{self.source}: field '{name}' must be a list of coefficients")
        if length is not None and len(values) != length:
            raise TableauError(
                f"{self.source}: field '{name}' has {len(values)} entries, expected {length} "
                f"(one per stage)"
            )
        parsed = []
        for index, value in enumerate(values):
            number, exact = _parse_coefficient(value, f"{self.source}: field '{name}[{index}]'")
            self.exact &= exact
            parsed.append(number)
        return tuple(parsed)

    def rows(self, values: Any, name: str, stages: int, square: bool) -> tuple[tuple[Fraction, ...], ...]:
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise TableauError(f"{self.source}: field '{name}' must be a list of rows")
        if len(values) != stages:
            raise TableauError(
                f"{self.source}: field '{name}' has {len(values)} rows, expected {stages} (one per stage)"
            )
        rows = []
        for i, row in enumerate(values):
            expected = stages if square else i
            if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != expected:
                got = len(row) if isinstance(row, Sequence) and not isinstance(row, str) else "no"
                rule = "each row has one entry per stage" if square else "row i of a has i entries"
                raise TableauError(
                    f"{self.source}: field '{name}[{i}]' has {got} entries, expected {expected} ({rule})"
                )
            rows.append(self.vector(row, f"{name}[{i}]"))
        return tuple(rows)


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta scheme with exact coefficients, verified when built.

    Args:
        name: registry name, e.g. ``"dopri5"``.
        c: the s nodes. Entries of ``c``, ``a`` and ``b`` may be ints, Fractions, strings
            (``"35/384"``, ``"0.161"``) or floats; strings and ints are exact.
        a: the strictly lower-triangular matrix, as rows: row i (from 0) has i entries.
        b: the s weights of the propagated solution.
        order: order of the propagated solution; all order conditions up to it are checked.
        description: one line, with the literature reference.
        embedded: an embedded estimate (adaptive schemes), as an :class:`EmbeddedEstimate`
            or a ``(order, b_embedded)`` pair.
        secondary: a second embedded estimate (DOP853's order-3 one).
        fsal: whether the last stage is the next step's first.
        dense: the continuous extension, as a :class:`DenseOutput` or an ``(order, rows)`` pair where
            row i lists p_i1, …, p_id of b_i(θ) = Σ_k p_ik θ^k; its order conditions are checked as
            polynomial identities in θ. Without one, the solver lands a step on every output time.
        partner: the symplectic partner; derived when omitted.
        source: where the tableau came from (a file path), used in error messages.
        approximate: the coefficients, rational or not, are published approximations of a
            scheme with irrational ones (Prince–Dormand 8(7)): conditions 2–6 are checked to
            1e-14 instead of exactly.

    Raises:
        TableauError: naming the source, the field and the violated condition.

    Examples:
        >>> heun = Tableau("heun2", c=[0, 1], a=[[], [1]], b=["1/2", "1/2"], order=2)
        >>> heun.stages, heun.partner.a[0]
        (2, (Fraction(1, 2), Fraction(-1, 2)))
        >>> Tableau("heun2", c=[0, 1], a=[[], [1]], b=["1/2", "1/2"], order=2,
        ...         dense=(2, [[1, "-1/2"], [0, "1/2"]])).dense_order
        2
    """

    name: str
    c: tuple[Fraction, ...]
    a: tuple[tuple[Fraction, ...], ...]
    b: tuple[Fraction, ...]
    order: int
    description: str = ""
    embedded: EmbeddedEstimate | None = None
    secondary: EmbeddedEstimate | None = None
    fsal: bool = False
    dense: DenseOutput | None = None
    partner: Partner | None = None
    source: str | None = None
    exact: bool = field(init=False, default=True)

    def __init__(
        self,
        name: str,
        c: Sequence[Coefficient],
        a: Sequence[Sequence[Coefficient]],
        b: Sequence[Coefficient],
        order: int,
        *,
        description: str = "",
        embedded: EmbeddedEstimate | tuple[int, Sequence[Coefficient]] | None = None,
        secondary: EmbeddedEstimate | tuple[int, Sequence[Coefficient]] | None = None,
        fsal: bool = False,
        dense: DenseOutput | tuple[int, Sequence[Sequence[Coefficient]]] | None = None,
        partner: Partner | tuple[Sequence[Coefficient], Sequence[Sequence[Coefficient]]] | None = None,
        source: str | None = None,
        approximate: bool = False,
    ) -> None:
        where = source or f"tableau {name!r}"
        if not isinstance(name, str) or not name.isidentifier():
            raise TableauError(f"{where}: field 'name' must be an identifier-like string, got {name!r}")
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            raise TableauError(f"{where}: field 'order' must be a positive integer, got {order!r}")
        parse = _Parser(where)
        b_parsed = parse.vector(b, "b")
        stages = len(b_parsed)
        if stages == 0:
            raise TableauError(f"{where}: field 'b' is empty; a scheme needs at least one stage")
        if order > stages:
            # Checked before the order conditions: their rooted trees grow exponentially with the order.
            raise TableauError(
                f"{where}: field 'order' is {order} but an explicit scheme with {stages} stages has order at "
                f"most {stages}; declare the order the scheme has"
            )
        _check_order_cap(where, "order", order)
        if not isinstance(description, str):
            raise TableauError(f"{where}: field 'description' must be a string, got {description!r}")
        if not isinstance(fsal, bool):
            raise TableauError(f"{where}: field 'fsal' must be true or false, got {fsal!r}")
        if not isinstance(approximate, bool):
            raise TableauError(f"{where}: field 'approximate' must be true or false, got {approximate!r}")
        values = {
            "name": name,
            "c": parse.vector(c, "c", stages),
            "a": parse.rows(a, "a", stages, square=False),
            "b": b_parsed,
            "order": order,
            "description": description,
            "embedded": _embedded(parse, embedded, "b_embedded", b_parsed),
            "secondary": _embedded(parse, secondary, "secondary_error.b_embedded", b_parsed),
            "fsal": fsal,
            "dense": _dense(parse, dense, stages),
            "partner": _partner(parse, partner, stages),
            "source": source,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "exact", parse.exact and not approximate)
        _verify(self)
        if self.partner is None:
            object.__setattr__(self, "partner", derive_partner(self.a, self.b))

    @property
    def stages(self) -> int:
        """Number of stages s."""
        return len(self.b)

    @property
    def adaptive(self) -> bool:
        """Whether the scheme has an embedded error estimate."""
        return self.embedded is not None

    @property
    def embedded_order(self) -> int | None:
        """Order of the embedded solution, or ``None`` for a fixed-step scheme."""
        return self.embedded.order if self.embedded else None

    @property
    def dense_order(self) -> int | None:
        """Order of the continuous extension, or ``None`` when the scheme has none."""
        return self.dense.order if self.dense else None

    @functools.cached_property
    def floats(self) -> FloatCoefficients:
        """The coefficients as Python floats, for the stepping engine."""
        return FloatCoefficients.of(self)

    @functools.cached_property
    def adjoint(self) -> AdjointCoefficients:
        """The partner's coefficients as the adjoint step uses them."""
        return _adjoint_coefficients(self)

    @classmethod
    def from_file(cls, path: str | Path) -> Tableau:
        """Load and verify a tableau from a TOML file (format: docs/tableau-format.md)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TableauError(f"{path}: cannot read the tableau file ({exc.strerror})") from None
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Tableau:
        r"""Parse and verify a tableau from TOML text (format: docs/tableau-format.md).

        Raises:
            TableauError: invalid TOML, an unknown or missing field, a bare float, or a
                failed verification, naming ``source``, the field and the condition.

        Examples:
            >>> from symadj import Tableau
            >>> text = 'name = "midpoint2"\norder = 2\nc = ["0", "1/2"]\na = [[], ["1/2"]]\nb = ["0", "1"]'
            >>> Tableau.from_toml(text).partner.b
            (Fraction(1, 1), Fraction(1, 1))
            >>> Tableau.from_toml(text.replace('"1/2"]]', '"1/3"]]'))
            Traceback (most recent call last):
                ...
            symadj.errors.TableauError: <string>: field 'c[1]' = 1/2 but row 1 of 'a' sums to 1/3 ...
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TableauError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<mapping>") -> Tableau:
        """Build a tableau from the keys of the file format."""
        unknown = set(data) - _FILE_KEYS
        if unknown:
            raise TableauError(
                f"{source}: unknown field(s) {sorted(unknown)}; valid fields: {sorted(_FILE_KEYS)}"
            )
        for key in ("name", "order", "c", "a", "b"):
            if key not in data:
                raise TableauError(f"{source}: missing required field '{key}'")
        _reject_floats(data, source, "")
        return cls(
            data["name"],
            data["c"],
            data["a"],
            data["b"],
            data["order"],
            description=data.get("description", ""),
            embedded=_embedded_from_file(data, source),
            secondary=_section_estimate(data, "secondary_error", source),
            fsal=data.get("fsal", False),
            dense=_section_dense(data, source),
            partner=_section_partner(data, source),
            source=source,
            approximate=data.get("approximate", False),
        )


_FILE_KEYS = frozenset(
    {"name", "description", "order", "embedded_order", "fsal", "c", "a", "b", "b_embedded", "error",
     "secondary_error", "dense", "partner", "approximate"}
)


@dataclass(frozen=True)
class FloatCoefficients:
    """Tableau coefficients as floats, zero entries of ``a`` dropped."""

    c: tuple[float, ...]
    a: tuple[tuple[tuple[int, float], ...], ...]  # row i: (j, a_ij) for a_ij != 0
    b: tuple[float, ...]
    error: tuple[float, ...] | None
    secondary_error: tuple[float, ...] | None
    dense: tuple[tuple[float, ...], ...] | None  # dense[i][k-1] = p_ik, as in DenseOutput

    @classmethod
    def of(cls, tab: Tableau) -> FloatCoefficients:
        def nonzero(row: Sequence[Fraction]) -> tuple[tuple[int, float], ...]:
            return tuple((j, float(x)) for j, x in enumerate(row) if x != 0)

        return cls(
            c=tuple(float(x) for x in tab.c),
            a=tuple(nonzero(row) for row in tab.a),
            b=tuple(float(x) for x in tab.b),
            error=tuple(float(x) for x in tab.embedded.error) if tab.embedded else None,
            secondary_error=tuple(float(x) for x in tab.secondary.error) if tab.secondary else None,
            dense=tuple(tuple(float(x) for x in row) for row in tab.dense.coefficients) if tab.dense else None,
        )


def derive_partner(a: Sequence[Sequence[Fraction]], b: Sequence[Fraction]) -> Partner:
    """The symplectic partner of an explicit scheme: Ā_ij = (b_i B_j − B_j a_ji) / B_i."""
    stages = len(b)
    weights = tuple(bi if bi != 0 else Fraction(1) for bi in b)

    def a_full(i: int, j: int) -> Fraction:
        return a[i][j] if j < i else Fraction(0)

    matrix = tuple(
        tuple((b[i] * weights[j] - weights[j] * a_full(j, i)) / weights[i] for j in range(stages))
        for i in range(stages)
    )
    return Partner(weights, matrix)


def _adjoint_coefficients(tab: Tableau) -> AdjointCoefficients:
    assert tab.partner is not None
    big_b, a_bar = tab.partner.b, tab.partner.a
    s = tab.stages
    e = [tab.b[i] / big_b[i] for i in range(s)]
    coupling = [[big_b[i] * (e[i] * big_b[j] - a_bar[i][j]) / big_b[j] if j > i else Fraction(0)
                 for j in range(s)] for i in range(s)]
    active = [True] * s
    for i in reversed(range(s)):
        # A stage is needed if the output uses it, or a later needed stage couples to it.
        active[i] = e[i] != 0 or any(coupling[i][j] != 0 and active[j] for j in range(i + 1, s))
    return AdjointCoefficients(
        input_weight=tuple(float(big_b[i] * e[i]) for i in range(s)),
        coupling=tuple(tuple(float(x) for x in row) for row in coupling),
        active=tuple(active),
    )


def _verify(tab: Tableau) -> None:
    where = tab.source or f"tableau {tab.name!r}"
    tolerance = Fraction(0) if tab.exact else INEXACT_TOLERANCE

    def close(x: Fraction, y: Fraction) -> bool:
        return abs(x - y) <= tolerance

    for i, row in enumerate(tab.a):
        if not close(sum(row, Fraction(0)), tab.c[i]):
            raise TableauError(
                f"{where}: field 'c[{i}]' = {tab.c[i]} but row {i} of 'a' sums to {sum(row, Fraction(0))} "
                f"(row sums of a must equal c)"
            )
    _check_order(where, "b", tab.a, tab.b, tab.order, tolerance)
    for label, estimate in (("b_embedded", tab.embedded), ("secondary_error", tab.secondary)):
        if estimate is None:
            continue
        _check_order(where, label, tab.a, estimate.b_embedded, estimate.order, tolerance)
    if tab.secondary is not None and tab.embedded is None:
        raise TableauError(f"{where}: field 'secondary_error' needs a primary 'b_embedded'")
    if tab.fsal:
        s = tab.stages
        if tab.c[-1] != 1 or tab.b[-1] != 0 or tuple(tab.a[-1]) != tab.b[:-1]:
            raise TableauError(
                f"{where}: field 'fsal' is true but the last stage is not the next step's first "
                f"(FSAL needs c_s = 1, b_s = 0 and row {s - 1} of a equal to b[:{s - 1}])"
            )
    if tab.dense is not None:
        _check_dense(where, tab, tolerance)
    if tab.partner is not None:
        _check_partner(where, tab)


def _check_order(where: str, label: str, a, b, order: int, tolerance: Fraction) -> None:
    for index, tree_order, residual in order_condition_residuals(a, b, order):
        if abs(residual) > tolerance:
            raise TableauError(
                f"{where}: field '{label}' violates the order-{tree_order} condition of rooted tree "
                f"#{index} (residual {float(residual):.3g}); the declared order {order} does not hold"
            )


def _check_dense(where: str, tab: Tableau, tolerance: Fraction) -> None:
    dense = tab.dense
    assert dense is not None
    rows = dense.coefficients
    if len(rows) != tab.stages or not rows[0]:
        raise TableauError(
            f"{where}: field 'dense.b' has {len(rows)} rows, expected {tab.stages} non-empty ones (one per stage)"
        )
    degree = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != degree:
            raise TableauError(
                f"{where}: field 'dense.b[{i}]' has {len(row)} entries, expected {degree} like dense.b[0] "
                f"(every row lists p_i1 … p_id of the same degree d)"
            )
    if dense.order > tab.order:
        raise TableauError(
            f"{where}: field 'dense.order' is {dense.order} but the scheme has order {tab.order}; "
            f"b_i(1) = b_i makes the extension's order at most the scheme's"
        )
    if degree < dense.order:
        raise TableauError(
            f"{where}: field 'dense.b' has degree {degree} but 'dense.order' is {dense.order}; "
            f"an extension of order q needs polynomials of degree at least q"
        )
    for i, row in enumerate(rows):
        if abs(sum(row, Fraction(0)) - tab.b[i]) > tolerance:
            raise TableauError(
                f"{where}: field 'dense.b[{i}]' sums to {sum(row, Fraction(0))} at θ = 1, "
                f"expected b[{i}] = {tab.b[i]} (the condition b_i(1) = b_i)"
            )
    for index, tree_order, power, residual in dense_condition_residuals(tab.a, rows, dense.order):
        if abs(residual) > tolerance:
            raise TableauError(
                f"{where}: field 'dense.b' violates the order-{tree_order} condition of rooted tree #{index} "
                f"at θ^{power} (residual {float(residual):.3g}); the declared dense order {dense.order} "
                f"does not hold"
            )


def _check_partner(where: str, tab: Tableau) -> None:
    partner = tab.partner
    assert partner is not None
    for i, (bi, big_bi) in enumerate(zip(tab.b, partner.b)):
        expected = bi if bi != 0 else Fraction(1)
        if big_bi != expected:
            raise TableauError(
                f"{where}: field 'partner.b[{i}]' = {big_bi}, expected {expected} "
                f"(b_i where b_i != 0, else 1)"
            )
    s = tab.stages
    for i in range(s):
        for j in range(s):
            a_ji = tab.a[j][i] if i < j else Fraction(0)
            residual = partner.b[i] * partner.a[i][j] + partner.b[j] * a_ji - tab.b[i] * partner.b[j]
            if residual != 0:
                raise TableauError(
                    f"{where}: field 'partner.a[{i}][{j}]' violates the symplecticity condition "
                    f"B_i Ā_ij + B_j a_ji − b_i B_j = 0 (residual {residual}); write the partner exactly "
                    f"or omit [partner] to have it derived"
                )


def _embedded(parse: _Parser, value, label: str, b: tuple[Fraction, ...]) -> EmbeddedEstimate | None:
    if value is None or isinstance(value, EmbeddedEstimate):
        return value
    order, weights = value
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise TableauError(f"{parse.source}: the order of '{label}' must be a positive integer, got {order!r}")
    _check_order_cap(parse.source, f"order of {label}", order)
    if order > len(b):
        raise TableauError(
            f"{parse.source}: the order of '{label}' is {order} but the scheme has {len(b)} stages, so at most "
            f"{len(b)}; declare the order the estimate has"
        )
    b_hat = parse.vector(weights, label, len(b))
    return EmbeddedEstimate(order, b_hat, tuple(x - y for x, y in zip(b, b_hat)))


def _dense(parse: _Parser, value, stages: int) -> DenseOutput | None:
    if value is None or isinstance(value, DenseOutput):
        return value
    order, rows = value
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise TableauError(f"{parse.source}: field 'dense.order' must be a positive integer, got {order!r}")
    _check_order_cap(parse.source, "dense.order", order)
    if not isinstance(rows, Sequence) or isinstance(rows, str) or len(rows) != stages:
        raise TableauError(f"{parse.source}: field 'dense.b' must have one row per stage ({stages})")
    return DenseOutput(order, tuple(parse.vector(row, f"dense.b[{i}]") for i, row in enumerate(rows)))


def _partner(parse: _Parser, value, stages: int) -> Partner | None:
    if value is None or isinstance(value, Partner):
        return value
    weights, matrix = value
    return Partner(parse.vector(weights, "partner.b", stages), parse.rows(matrix, "partner.a", stages, square=True))


def _embedded_from_file(data: Mapping[str, Any], source: str):
    has_weights, has_order = "b_embedded" in data, "embedded_order" in data
    if has_weights != has_order:
        missing = "embedded_order" if has_weights else "b_embedded"
        raise TableauError(f"{source}: missing field '{missing}' (b_embedded and embedded_order go together)")
    if "error" in data and not has_weights:
        raise TableauError(f"{source}: field 'error' needs 'b_embedded' (error weights are b − b_embedded)")
    if not has_weights:
        return None
    _check_stated_error(data, data, "", source)
    return (data["embedded_order"], data["b_embedded"])


def _section(
    data: Mapping[str, Any], key: str, required: tuple[str, ...], source: str, optional: tuple[str, ...] = ()
) -> Mapping[str, Any] | None:
    section = data.get(key)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise TableauError(f"{source}: field '{key}' must be a table ([{key}])")
    valid = sorted(required + optional)
    unknown = set(section) - set(valid)
    if unknown:
        raise TableauError(f"{source}: unknown field(s) {sorted(unknown)} in [{key}]; valid: {valid}")
    for name in required:
        if name not in section:
            raise TableauError(f"{source}: missing field '{key}.{name}'")
    return section


def _section_estimate(data: Mapping[str, Any], key: str, source: str):
    section = _section(data, key, ("order", "b_embedded"), source, optional=("error",))
    if section is None:
        return None
    _check_stated_error(data, section, f"{key}.", source)
    return (section["order"], section["b_embedded"])


def _section_dense(data: Mapping[str, Any], source: str):
    section = _section(data, "dense", ("order", "b"), source)
    return None if section is None else (section["order"], section["b"])


def _section_partner(data: Mapping[str, Any], source: str):
    section = _section(data, "partner", ("b", "a"), source)
    return None if section is None else (section["b"], section["a"])


def _reject_floats(value: Any, source: str, where: str) -> None:
    """Files state coefficients exactly: a TOML float has already lost digits."""
    if isinstance(value, float):
        raise TableauError(
            f"{source}: field '{where}' is the TOML float {value!r}; write coefficients as strings "
            f"(\"1/3\", \"0.161\") so that they are exact"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _reject_floats(item, source, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_floats(item, source, f"{where}[{index}]")


def _check_stated_error(data: Mapping[str, Any], section: Mapping[str, Any], prefix: str, source: str) -> None:
    """The file may state the error weights for the reader; they must be b − b_embedded."""
    if "error" not in section:
        return
    parse = _Parser(source)
    b = parse.vector(data["b"], "b")
    b_hat = parse.vector(section["b_embedded"], f"{prefix}b_embedded", len(b))
    stated = parse.vector(section["error"], f"{prefix}error", len(b))
    for i, (e, bi, bh) in enumerate(zip(stated, b, b_hat)):
        if e != bi - bh:
            raise TableauError(
                f"{source}: field '{prefix}error[{i}]' = {e}, but b[{i}] − b_embedded[{i}] = {bi - bh} "
                f"(error weights must be b − b_embedded)"
            )
