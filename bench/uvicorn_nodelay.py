"""``python -m uvicorn`` with ``linkgate.serving``'s TCP_NODELAY fix, for
``bench.gateway --tcp-nodelay``: the same CLI and arguments."""

from __future__ import annotations

import sys

from uvicorn.main import main

from linkgate.serving import keep_tcp_nodelay_with_workers

keep_tcp_nodelay_with_workers()

if __name__ == "__main__":
    sys.exit(main())
