"""symadj's JAX backend (a plugin registered through the ``symadj`` entry point)."""
