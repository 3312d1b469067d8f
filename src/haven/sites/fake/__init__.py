"""In-memory site driver for engine unit tests (never for production)."""

from haven.sites.fake.driver import FakeDriver

__all__ = ["FakeDriver"]
