"""One module per workflow; importing this package registers them all with DBOS."""

from haven.engine.workflows import cleanup, failback, failover, protect, test_failover

__all__ = ["cleanup", "failback", "failover", "protect", "test_failover"]
