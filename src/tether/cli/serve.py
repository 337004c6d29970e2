"""``tether serve``: search an index over HTTP (tether.search.server; pip install 'tether[serve]')."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Serve INDEX_DIR (written by `tether index`) on http://HOST:PORT:

  /                 a web page: search by text or image, pair check (an image and a caption)
  /search           tether's API: text, image upload or vector; image or text results; filters
  /docs             the OpenAPI schema, browsable
  /knn-service, /metadata, /indices-list, /config.json
                    clip-retrieval's back-end API: its ClipClient and front end work unchanged
  /health, /metrics liveness and Prometheus metrics

Text and image queries are embedded with the model recorded by the embedding job (or --model).
Images are served only from the indexed collection, by row id. New parts added with
`tether index` are picked up without a restart. With --shard URL (repeatable) this server is a
front that merges the top-k of several `tether serve` shard processes instead of an index.

Examples:
  tether serve index/
  tether serve index/ --host 0.0.0.0 --port 8080 --model ./my-clip
  tether serve --index demo/index
  tether serve --shard http://127.0.0.1:1235 --shard http://127.0.0.1:1236 --port 1234
"""


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a search index: web page, clip-retrieval's API, tether's API",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index_dir", nargs="?", metavar="INDEX_DIR", help="index folder written by `tether index`")
    p.add_argument("--index", dest="index_opt", metavar="INDEX_DIR", help="the same, as an option")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=1234, help="port (default 1234, as clip-retrieval)")
    p.add_argument("--model", help="embed queries with this model instead of the embedding job's")
    p.add_argument("--name", help="index name in clip-retrieval's API (default: the folder's name)")
    p.add_argument("--shard", action="append", default=[], metavar="URL",
                   help="serve as a front over these shard servers (repeatable) instead of an index")
    p.add_argument("--allow-image-url", action="store_true",
                   help="let /knn-service fetch image_url (off by default: no server-side fetching)")
    p.add_argument("--max-body-mb", type=float, default=16, help="largest request body (default 16 MB)")
    p.add_argument("--timeout", type=float, default=30, help="seconds a query may take (default 30)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.errors import InputError

    index_dir = args.index_opt or args.index_dir
    if args.index_opt and args.index_dir and args.index_opt != args.index_dir:
        raise InputError("give INDEX_DIR once (as the argument or as --index)")
    if bool(index_dir) == bool(args.shard):
        raise InputError("give an index folder (INDEX_DIR) or --shard URLs, not both or neither")
    try:
        from tether.search.server.app import ServerConfig, run_server
    except ImportError as err:
        raise InputError(f"tether serve needs FastAPI and uvicorn: pip install 'tether[serve]' ({err})") from None
    config = ServerConfig(index_dir=index_dir, shards=args.shard, model=args.model, name=args.name,
                          allow_image_url=args.allow_image_url, max_body_bytes=int(args.max_body_mb * 2**20),
                          timeout_s=args.timeout)
    run_server(config, host=args.host, port=args.port)
    return 0
