"""Equinox modules: ``import symadj.equinox`` (needs jax and equinox; ``import symadj`` alone imports neither).

Examples:
    >>> import symadj.equinox
    >>> symadj.equinox.NeuralODE.__name__
    'NeuralODE'
"""

from ._plugins import registry

# The backend plugin that declares symadj.equinox (BackendInfo.modules) holds its contents.
_contents = registry.plugin_module("equinox")
NeuralODE = _contents.NeuralODE

__all__ = ["NeuralODE"]
