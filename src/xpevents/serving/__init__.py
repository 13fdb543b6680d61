"""What the two services (the relay and the collector) share: the uvicorn server
wrapper, the bounded gzip-safe request-body reader and the event API payload schema.
"""
