"""The send stage: claimed visitors → request bodies → an answer → ack, retry or dead letter.

No threads, no sockets, no clock: every function takes ``now``. The dispatch drivers
(threads, asyncio, the synchronous dispatcher) do the waiting and the HTTP calls and
hand the answers here.
"""
