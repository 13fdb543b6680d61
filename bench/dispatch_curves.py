"""How dispatch cost grows: the curves of ``bench/dispatch.py``, run as their own benchmark.

The loopback sink's own ceiling (pre-encoded batches of 100 and 1,000 visitors from two
keep-alive connections), then a ladder of paced rates up to the first step with a loss for
xpevents (``BatchDispatcher`` defaults) and the official SDK (its default
``BatchEventProcessor``) at 0 and 200 ms endpoint latency (delivered/s, delivered fraction
and caller p99 per offered rate), then SDK CPU seconds per 10k delivered vs
``batch_size``. Knobs: ``XPEVENTS_BENCH_DISPATCH_STEP_S``, ``_BATCH_N``, ``_BATCH_SIZES``,
``_SINK_S`` (see ``bench/__main__.py``). ``python -m bench dispatch_curves``; figures are
saved to ``docs/bench/dispatch_curves.json``.
"""

from __future__ import annotations

from bench import dispatch


def main() -> None:
    dispatch.main(["sink", "ladder", "batch"], name="dispatch_curves")


if __name__ == "__main__":
    main()
