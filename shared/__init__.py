"""privacy-functions: the shared code of every function."""

# The deployed version (`GET /healthz` answers it); pyproject.toml's project.version says the same.
__version__ = "0.1.0"
