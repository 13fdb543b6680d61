"""The in-memory spool (``memory://``): bounded, fast, not durable.

:class:`MemorySpool` (``spool.py``) takes events and applies the bound and the overflow
policy; the visitors it holds wait in :class:`~xpevents.spool.memory.holdings.Holdings`
(ready, leased or scheduled for a retry), and its dead letters in a
:class:`~xpevents.spool.memory.dead.DeadLetterBox`.
"""

from xpevents.spool.memory.spool import OVERFLOW_POLICIES, MemorySpool

__all__ = ["OVERFLOW_POLICIES", "MemorySpool"]
