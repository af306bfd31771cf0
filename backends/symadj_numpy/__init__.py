"""symadj's forward-only backend for NumPy and any other array-API library."""
