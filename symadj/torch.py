"""PyTorch modules: ``import symadj.torch`` (needs torch; ``import symadj`` alone does not import it).

Examples:
    >>> import symadj.torch
    >>> symadj.torch.NeuralODE.__name__
    'NeuralODE'
"""

from symadj_torch.modules import NeuralODE

__all__ = ["NeuralODE"]
