"""Private helpers shared across xpevents' layers (not public API).

Everything here sits underneath every other package, imports nothing from xpevents but
:mod:`xpevents.errors`, and may change without notice:

* :mod:`~xpevents._internal.validate`: the one family of argument checks, so every
  :class:`~xpevents.ConfigError` message has the same shape
  (``Owner(name=value): what was expected``);
* :mod:`~xpevents._internal.forking`: the one at-fork registry, which resets objects in
  a forked child in a fixed order, lowest layer first;
* :mod:`~xpevents._internal.ratelimit`: "log at most every N seconds per key";
* :mod:`~xpevents._internal.cache`: a dict that forgets everything when it grows too big;
* :mod:`~xpevents._internal.names`: the "unknown option 'strem'; did you mean
  'stream'?" wording of every unknown option or key;
* :mod:`~xpevents._internal.paths`: what a file path that cannot be opened lacks (a
  missing directory), worded once for the spool and the collector.
"""
