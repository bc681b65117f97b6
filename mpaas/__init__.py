"""mpaas: a self-hosted mobile delivery backend."""

__version__ = "0.1.0"
