"""``tether serve``: the HTTP server (FastAPI on uvicorn; pip install 'tether[serve]').

``backend.py`` (an index on this machine), ``shards.py`` (a front over shard servers), ``query.py``
(one search: query vector, filters, de-duplication, result rows), ``clip_api.py`` (clip-retrieval's
routes), ``api.py`` (tether's routes), ``limits.py`` (body size, timeout, errors), ``metrics.py``
(Prometheus), ``app.py`` (the application), ``web/`` (the search page, static files).
"""
