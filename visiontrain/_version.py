"""The version: one place, read by the package, the CLI, checkpoints and pyproject.toml (setuptools dynamic)."""
__version__ = "0.1.0"
