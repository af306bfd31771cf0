"""Rooted trees and the Runge–Kutta order conditions they stand for (Butcher's theory).

A tree is stored as the sorted tuple of the indices of its root's subtrees, so
every tree has one canonical form and trees can be generated order by order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class RootedTrees:
    """All rooted trees up to some order: ``children[k]`` are tree k's subtrees."""

    children: tuple[tuple[int, ...], ...]
    order: tuple[int, ...]
    density: tuple[int, ...]  # Butcher's gamma


@functools.cache
def rooted_trees(max_order: int) -> RootedTrees:
    """Every rooted tree with at most ``max_order`` nodes (1, 2, 4, 8, 17, 37, 85, 200, ...),
    those of lower orders first: the trees of order n extend the cached trees up to n − 1,
    so a check that stops at order n never builds the higher orders."""
    if max_order < 1:
        return RootedTrees((), (), ())
    lower = rooted_trees(max_order - 1)
    children, order, density = list(lower.children), list(lower.order), list(lower.density)

    def forests(total: int, max_index: int) -> Iterator[tuple[int, ...]]:
        # Non-increasing index sequences, so each multiset of subtrees appears once.
        if total == 0:
            yield ()
            return
        for index in range(max_index, -1, -1):
            if order[index] <= total:
                for rest in forests(total - order[index], index):
                    yield (index, *rest)

    for forest in list(forests(max_order - 1, len(children) - 1)):
        children.append(forest)
        order.append(max_order)
        gamma = max_order
        for child in forest:
            gamma *= density[child]
        density.append(gamma)
    return RootedTrees(tuple(children), tuple(order), tuple(density))


def elementary_weights(
    a: Sequence[Sequence[Fraction]], max_order: int
) -> Iterator[tuple[int, int, int, list[Fraction]]]:
    """Yield ``(tree index, tree order, γ(tree), Φ(tree))`` for every tree up to ``max_order``,
    order by order: the trees of an order are generated only once every lower one was yielded.

    Φ(tree) holds one elementary weight per stage: Φ_i(τ) = Π_children (A Φ(child))_i, so that
    Φ_i is 1 for the single node and the scheme has order p when b·Φ(τ) = 1/γ(τ) for ρ(τ) ≤ p.
    ``a`` is given as its strictly lower-triangular rows (row i has i entries).
    """
    stages = len(a)
    a_times: list[list[Fraction]] = []  # a_times[k] = A @ Phi(tree k)
    for tree_order in range(1, max_order + 1):
        trees = rooted_trees(tree_order)
        for index in range(len(a_times), len(trees.children)):
            phi = [Fraction(1)] * stages
            for child in trees.children[index]:
                phi = [p * q for p, q in zip(phi, a_times[child])]
            a_times.append([sum((aij * phi[j] for j, aij in enumerate(row)), Fraction(0)) for row in a])
            yield index, tree_order, trees.density[index], phi


def order_condition_residuals(
    a: Sequence[Sequence[Fraction]], b: Sequence[Fraction], max_order: int
) -> Iterator[tuple[int, int, Fraction]]:
    """Yield ``(tree index, tree order, b·Φ(tree) − 1/γ(tree))`` for every tree up to ``max_order``.

    ``a`` is given as its strictly lower-triangular rows (row i has i entries).
    """
    for index, order, density, phi in elementary_weights(a, max_order):
        weight = sum((bi * p for bi, p in zip(b, phi)), Fraction(0))
        yield index, order, weight - Fraction(1, density)


def dense_condition_residuals(
    a: Sequence[Sequence[Fraction]], coefficients: Sequence[Sequence[Fraction]], max_order: int
) -> Iterator[tuple[int, int, int, Fraction]]:
    """Yield ``(tree index, tree order, power k, Σ_i p_ik Φ_i(tree) − [k = ρ]/γ)`` up to ``max_order``.

    A continuous extension b_i(θ) = Σ_k p_ik θ^k has order q when Σ_i b_i(θ) Φ_i(τ) = θ^ρ(τ)/γ(τ)
    for every tree with ρ(τ) ≤ q, as polynomials in θ: one condition per tree and power.
    ``coefficients[i][k-1]`` is p_ik; all rows have the same length, the degree.
    """
    degree = len(coefficients[0]) if coefficients else 0
    for index, order, density, phi in elementary_weights(a, max_order):
        for power in range(1, degree + 1):
            weight = sum((row[power - 1] * p for row, p in zip(coefficients, phi)), Fraction(0))
            target = Fraction(1, density) if power == order else Fraction(0)
            yield index, order, power, weight - target
