"""Framework integrations: the few lines every application would otherwise write itself.

Each one creates the client once per process, hands it to your code, and flushes what
is queued before the process goes away (docs/integrations.md, examples/):

* :mod:`xpevents.integrations.starlette`: FastAPI and Starlette (``install``,
  ``get_client``, ``get_user``, ``lifespan``);
* :mod:`xpevents.integrations.flask`: a Flask extension (``Xpevents``, ``current_client``);
* :mod:`xpevents.integrations.django`: a Django app configured from ``settings.XPEVENTS``;
* :mod:`xpevents.integrations.celery`: Celery worker signals;
* :mod:`xpevents.integrations.serverless`: ``flush_after`` for AWS Lambda and the like;
* :mod:`xpevents.integrations.pool`: ``multiprocessing`` pool workers;
* :mod:`xpevents.integrations.settings`: the options they share.

Importing this package imports no framework; each module imports only its own.
"""
