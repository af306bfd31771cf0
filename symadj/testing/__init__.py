"""The conformance suite a backend plugin runs from its own tests.

Subclass one of the classes below in a test module of the plugin, name the backend, and
pytest runs the suite against it (the class name must start with ``Test``)::

    # tests/test_my_backend.py of the plugin
    from symadj.testing import ForwardConformance

    class TestMyLibConformance(ForwardConformance):
        backend = "mylib"          # the name the plugin registers

The parts, each a class to mix in:

- :class:`ForwardConformance`: fixed-step and adaptive solves with several shipped
  tableaux, outputs inside steps (the continuous extension) and tuple states, checked
  against a NumPy integrator written here (:func:`reference_solve`), independent of the
  engine; and hostile inputs (unsorted times, a non-finite state, an unknown method,
  mixed dtypes), each refused with its :mod:`symadj.errors` class. A forward-only backend
  (``differentiable = False``) runs this part alone.
- :class:`GradientConformance`: each exact gradient mode equals ``"backprop"`` to 1e-10
  (relative, float64), ``"adjoint"`` agrees to its tolerance, backprop agrees with finite
  differences, and every checkpoint policy gives the gradient of ``"all"``. The subclass
  supplies :meth:`GradientConformance.value_and_grad`, its library's autodiff.
- :class:`BufferConformance`: the buffers (:class:`symadj.Buffer`: ``write``, ``read``, ``stack``, ...).
- :class:`BackendConformance`: all three.

This package is test tooling, not part of the core: it imports pytest, and NumPy for its
reference (``symadj.testing._reference``).

Hooks every class has, to override where the library needs more: ``asarray`` (arrays of
the library from nested lists or NumPy; by default through the backend's namespace) and
``to_numpy``. Class attributes choose the tableaux, modes and policies the tests run over
(``fixed_step_methods``, ``adaptive_methods``, ``exact_gradient_modes``,
``gradient_methods``, ``checkpoint_policies``, ``buffer_shapes``); a library that compiles
every solve keeps a few in its default run and marks the rest with :func:`slow`, or whole
tests with ``slow_tests`` (register the ``slow`` marker in the plugin's pytest settings).

Examples:
    >>> from symadj.testing import ForwardConformance
    >>> class TestNumpyConformance(ForwardConformance):
    ...     backend = "numpy"
    >>> suite = TestNumpyConformance()
    >>> suite.test_fixed_step_solve_matches_reference("rk4")  # pytest parametrises it
"""

from __future__ import annotations

from ._reference import reference_solve, rotating_field, rotating_problem
from ._suite import BackendConformance, BufferConformance, ForwardConformance, GradientConformance, slow

__all__ = [
    "BackendConformance", "BufferConformance", "ForwardConformance", "GradientConformance", "reference_solve",
    "rotating_field", "rotating_problem", "slow",
]
