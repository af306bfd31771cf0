"""diffrax's adjoint slot: ``diffeqsolve(..., adjoint=symadj.diffrax.SymplecticAdjoint())``.

Needs jax, equinox and diffrax (``pip install symadj[diffrax]``); ``import symadj`` alone
imports none of them. diffrax runs the forward solve as ever; the gradient is the exact one of
that discrete solve, by the symplectic partner of the solver's tableau.

Examples:
    >>> import symadj.diffrax
    >>> symadj.diffrax.SymplecticAdjoint.__name__
    'SymplecticAdjoint'
"""

from ._plugins import registry

# The backend plugin that declares symadj.diffrax (BackendInfo.modules) holds its contents.
_contents = registry.plugin_module("diffrax")
SymplecticAdjoint = _contents.SymplecticAdjoint
DiffraxScopeError = _contents.DiffraxScopeError
partner_tableau = _contents.partner_tableau
Plan = _contents.Plan
plan = _contents.plan
DEFAULT_MEMORY = _contents.DEFAULT_MEMORY

__all__ = ["DEFAULT_MEMORY", "DiffraxScopeError", "Plan", "SymplecticAdjoint", "partner_tableau", "plan"]
