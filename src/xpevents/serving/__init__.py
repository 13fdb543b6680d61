"""What the two services (the relay and the collector) share: the uvicorn server
wrapper, the bounded gzip-safe request-body reader, the event API payload schema, and
the endpoints both answer alike (event API paths, JSON answers, the error shape).
"""
