"""The in-memory spool (``memory://``): bounded, fast, not durable."""

from xpevents.spool.memory.spool import OVERFLOW_POLICIES, MemorySpool

__all__ = ["OVERFLOW_POLICIES", "MemorySpool"]
