"""The gradient modes by name: ``gradient="symplectic"`` and the others become mode objects at once."""

from __future__ import annotations

from ._auto_gradient import AutoGradient
from ._continuous_adjoint import ContinuousAdjoint
from ._gradients import Backprop, CheckpointedBackprop, GradientMode, Symplectic
from ._reversible import Reversible
from .errors import UnknownNameError

_GRADIENT_MODES: dict[str, type[GradientMode]] = {
    mode.name: mode
    for mode in (AutoGradient, Symplectic, CheckpointedBackprop, Backprop, ContinuousAdjoint, Reversible)
}


def as_gradient_mode(mode: str | GradientMode) -> GradientMode:
    """Turn a name (``"auto"``, ``"symplectic"``, ``"checkpoint"``, ``"backprop"``, ``"adjoint"``,
    ``"reversible"``) into its :class:`GradientMode`; instances pass through.

    Args:
        mode: a :class:`GradientMode` or its name.

    Returns:
        The gradient mode object.

    Raises:
        UnknownNameError: an unknown name, listing the known ones.

    Examples:
        >>> import symadj
        >>> type(symadj.as_gradient_mode("checkpoint")).__name__
        'CheckpointedBackprop'
    """
    if isinstance(mode, GradientMode):
        return mode
    try:
        return _GRADIENT_MODES[mode]()
    except (KeyError, TypeError):
        raise UnknownNameError("gradient", mode, _GRADIENT_MODES) from None
