"""torchdiffeq's interface: ``from symadj.torchdiffeq import odeint, odeint_adjoint, odeint_event``
(needs torch; ``import symadj`` alone does not import it).

Same signatures, option names and method names as torchdiffeq's; exact gradients underneath
(see :mod:`symadj_torch.torchdiffeq` and docs/migration.md).

Examples:
    >>> import torch
    >>> from symadj.torchdiffeq import odeint_adjoint
    >>> y0 = torch.tensor([1.0], requires_grad=True)
    >>> ys = odeint_adjoint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="dopri8")
    >>> ys[-1].backward()
    >>> round(ys[-1].item(), 5), round(y0.grad.item(), 5)
    (0.36788, 0.36788)
"""

from ._plugins import registry

# The backend plugin that declares symadj.torchdiffeq (BackendInfo.modules) holds its contents.
_contents = registry.plugin_module("torchdiffeq")
METHODS = _contents.METHODS
odeint = _contents.odeint
odeint_adjoint = _contents.odeint_adjoint
odeint_event = _contents.odeint_event

__all__ = ["METHODS", "odeint", "odeint_adjoint", "odeint_event"]
