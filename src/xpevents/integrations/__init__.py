"""Framework integrations: the few lines every application would otherwise write itself.

:mod:`xpevents.integrations.starlette` gives Starlette and FastAPI a lifespan that starts
dispatchers on the app's event loop and flushes and closes them at shutdown.
"""
