"""The facade users call: :class:`Client`, its user contexts and notifications.

The public surface follows the official optimizely-sdk so code written against it
ports by changing the import; ``from xpevents.client import Client`` keeps working.
"""

from xpevents.client.client import Client

__all__ = ["Client"]
