"""One module per workflow; importing this package registers them all with DBOS."""

from haven.engine.workflows import cleanup, failover, protect, test_failover

__all__ = ["cleanup", "failover", "protect", "test_failover"]
