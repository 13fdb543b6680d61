"""The batching dispatchers' shared options, declared and checked once.

:class:`~xpevents.BatchDispatcher` and :class:`~xpevents.AsyncDispatcher` keep their
explicit, documented keyword signatures (they are the public API); both build one
:class:`DispatchOptions` from them with :meth:`DispatchOptions.from_arguments`, so
every shared option is validated in one place with one message shape. Options that only
concern the spool live in :class:`~xpevents.spool.opening.SpoolOptions`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xpevents._internal.validate import (
    choice,
    optional_callable,
    positive_int,
    positive_seconds,
    sender_count,
)
from xpevents.dispatch.environment import endpoint_default, sending_disabled
from xpevents.errors import ConfigError, DispatchError
from xpevents.send.endpoint import EndpointRouter
from xpevents.send.retry import BACKGROUND_RETRY, RetryPolicy
from xpevents.spool.envelope import API_MAX_BYTES
from xpevents.spool.memory import OVERFLOW_POLICIES
from xpevents.spool.opening import SpoolOptions

__all__ = ["DispatchOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchOptions:
    """Every option of a batching dispatcher (see :class:`~xpevents.BatchDispatcher`).

    Attributes:
        owner: the dispatcher class named in error messages.
        on_event_loop: ``dispatch_event`` runs on an asyncio loop and must never wait:
            ``overflow="block"`` and write-through durability are refused.
        spool: where visitors wait (:class:`~xpevents.spool.opening.SpoolOptions`).

    Raises:
        ConfigError: an option is invalid; the message names it and the fix.
    """

    owner: str
    on_event_loop: bool = False
    endpoint: str | None = None
    batch_size: int = 100
    flush_interval: float = 1.0
    max_batch_bytes: int = 1_048_576
    max_queue_events: int = 10_000
    overflow: str = "drop_newest"
    block_timeout: float = 1.0
    max_concurrent_requests: int = 2
    timeout: float = 10.0
    retry: RetryPolicy = BACKGROUND_RETRY
    gzip: bool = False
    lease: float = 30.0
    circuit_threshold: int = 5
    on_drop: Callable[[Any, str], object] | None = None
    on_success: Callable[[list[bytes]], object] | None = None
    on_failure: Callable[[list[bytes], DispatchError], object] | None = None
    spool: SpoolOptions = field(default_factory=SpoolOptions)
    router: EndpointRouter = field(init=False)
    disabled: bool = field(init=False)
    """``XPEVENTS_DISABLED`` is set: accept and count, never send."""

    def __post_init__(self) -> None:
        owner = self.owner
        positive_int("batch_size", self.batch_size, owner=owner)
        positive_seconds("flush_interval", self.flush_interval, owner=owner)
        positive_int("max_batch_bytes", self.max_batch_bytes, owner=owner, minimum=1024)
        if self.max_batch_bytes > API_MAX_BYTES:
            raise ConfigError(
                f"{owner}(max_batch_bytes={self.max_batch_bytes!r}): must be at most "
                f"{API_MAX_BYTES} (the event API's request limit)"
            )
        positive_int("max_queue_events", self.max_queue_events, owner=owner)
        choice("overflow", self.overflow, OVERFLOW_POLICIES, owner=owner)
        if self.overflow == "block" and self.on_event_loop:
            raise ConfigError(
                f"{owner}(overflow='block'): dispatch_event runs on the event loop and "
                "must never wait; use 'drop_newest' or 'drop_oldest' and a larger "
                "max_queue_events (drops are counted in stats().dropped)"
            )
        positive_seconds("block_timeout", self.block_timeout, owner=owner, allow_zero=True)
        sender_count(self.max_concurrent_requests, owner=owner)
        positive_seconds("timeout", self.timeout, owner=owner)
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(
                f"{owner}(retry={self.retry!r}): expected an xpevents.RetryPolicy, "
                f"got {type(self.retry).__name__}"
            )
        if not isinstance(self.gzip, bool):
            raise ConfigError(f"{owner}(gzip={self.gzip!r}): expected True or False")
        positive_seconds("lease", self.lease, owner=owner)
        positive_int("circuit_threshold", self.circuit_threshold, owner=owner)
        for name in ("on_drop", "on_success", "on_failure"):
            optional_callable(name, getattr(self, name), owner=owner)
        endpoint = endpoint_default(self.endpoint, owner)
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "router", EndpointRouter(endpoint))
        object.__setattr__(self, "disabled", sending_disabled(owner))

    @classmethod
    def from_arguments(
        cls, owner: str, arguments: Mapping[str, Any], *, on_event_loop: bool
    ) -> DispatchOptions:
        """Build the options from a driver's keyword arguments, taken by name.

        ``arguments`` is the driver's ``locals()``: every field of this class and of
        :class:`~xpevents.spool.opening.SpoolOptions` (``spool`` being the spec) that
        appears there is used; the rest keep their defaults.
        """
        spool_fields = {f.name for f in dataclasses.fields(SpoolOptions)} - {"spec", "owner"}
        spool = SpoolOptions(
            spec=arguments.get("spool"),
            owner=owner,
            **{name: arguments[name] for name in spool_fields if name in arguments},
        )
        own = {f.name for f in dataclasses.fields(cls) if f.init} - {"owner", "spool"}
        return cls(
            owner=owner,
            on_event_loop=on_event_loop,
            spool=spool,
            **{name: arguments[name] for name in own - {"on_event_loop"} if name in arguments},
        )
