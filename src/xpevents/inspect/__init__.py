"""Looking into datafiles and decisions: ``xpevents datafile`` and ``xpevents decide``.

:mod:`~xpevents.inspect.explain` walks a decision step by step (whitelist, audiences
with every condition's value, group and traffic buckets, rollout rules skipped and why);
:mod:`~xpevents.inspect.lint` finds datafile problems that load fine but surprise people;
:mod:`~xpevents.inspect.source` reads a datafile from a file, stdin or an SDK key;
:mod:`~xpevents.inspect.cli` renders all of it with rich (or as JSON).
"""
