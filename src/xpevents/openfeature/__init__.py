"""An OpenFeature provider over :class:`xpevents.Client` (``pip install xpevents[openfeature]``).

::

    from openfeature import api
    from xpevents.openfeature import XpeventsProvider

    api.set_provider(XpeventsProvider(sdk_key="YOUR_SDK_KEY"))
    flags = api.get_client()
    enabled = flags.get_boolean_value("new_checkout", False, EvaluationContext("user-42"))
    steps = flags.get_integer_value("new_checkout.steps", 3, EvaluationContext("user-42"))

See ``docs/openfeature.md`` for the flag-key forms, the reasons and error codes, events
and tracking.
"""

from xpevents.openfeature.provider import XpeventsProvider

__all__ = ["XpeventsProvider"]
