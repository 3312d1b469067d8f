"""One module per workflow; importing this package registers them all with DBOS."""

from haven.engine.workflows import protect

__all__ = ["protect"]
