"""A web UI to look into a store: entities, timelines with state at any sequence, queues.

``actors ui DB`` serves it on localhost; :func:`app` gives the ASGI app to mount in
an application of your own (it needs the ``ui`` extra: starlette and jinja2).
"""

from actors.ui._app import app as app

__all__ = ["app"]
