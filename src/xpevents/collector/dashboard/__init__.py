"""The collector's dashboard: ``GET /`` (live events, chart, experiments, fault form),
``GET /metrics``, and the filters of ``GET /events``. See ``docs/collector.md``."""

from xpevents.collector.dashboard.routes import CSP, Dashboard

__all__ = ["CSP", "Dashboard"]
