"""A client in its own process: ``python -m tests.client.run_client ENDPOINT SPOOL_DIR COUNT PREFIX FLUSH_S``
records COUNT events (``attributes.i`` = PREFIX-n), flushes for up to FLUSH_S seconds, closes, prints its stats."""
from __future__ import annotations

import json
import sys

from tea_client import TeaClient


def main() -> None:
    endpoint, spool_dir, count, prefix, flush_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], \
        float(sys.argv[5])
    client = TeaClient(endpoint, spool_dir=spool_dir, flush_interval_ms=50, max_queue_events=count + 1,
                       max_backoff_s=0.5, close_at_exit=False)
    for n in range(count):
        client.record("spooled", tenant_id="acme", i="%s-%d" % (prefix, n))
    flushed = client.flush(flush_s)
    closed = client.close(5)
    print(json.dumps({"flushed": flushed, "closed": closed, **client.stats()}))


if __name__ == "__main__":
    main()
