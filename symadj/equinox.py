"""Equinox modules: ``import symadj.equinox`` (needs jax and equinox; ``import symadj`` alone imports neither).

Examples:
    >>> import symadj.equinox
    >>> symadj.equinox.NeuralODE.__name__
    'NeuralODE'
"""

from symadj_jax.equinox import NeuralODE

__all__ = ["NeuralODE"]
