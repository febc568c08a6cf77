"""The package's version: the one place it is written (``pyproject.toml`` reads it from here).

A constant, so that ``otel_nonblocking.__version__`` costs no ``importlib.metadata`` scan of
``sys.path`` at a cold start.
"""

__version__ = "0.1.0.dev0"
