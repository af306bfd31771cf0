"""PyTorch modules: ``import symadj.torch`` (needs torch; ``import symadj`` alone does not import it).

Examples:
    >>> import symadj.torch
    >>> symadj.torch.NeuralODE.__name__
    'NeuralODE'
"""

from ._plugins import registry

# The backend plugin that declares symadj.torch (BackendInfo.modules) holds its contents.
_contents = registry.plugin_module("torch")
NeuralODE = _contents.NeuralODE

__all__ = ["NeuralODE"]
