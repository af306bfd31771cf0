"""symadj's PyTorch backend (a plugin registered through the ``symadj`` entry point)."""
