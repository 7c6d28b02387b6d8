"""Train one model in a process of its own and print its wall time, stages and peak RSS as
JSON, so that the refresh's memory is measured apart from the benchmark process.

Usage: ``python -m benchmarks.child URL MODEL``
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time

from recsys_db import training


def main() -> None:
    """Run the training given on the command line."""
    url, model = sys.argv[1], sys.argv[2]
    # the index choice (graphs built, recall per ef_search, exact vs hnsw timing) goes to
    # stderr, which the suite keeps with the results
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("recsys_db.store").setLevel(logging.INFO)
    start = time.perf_counter()
    result = training.train(url, model)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds, "stages": result.stages, "status": result.status,
        "version": result.version,
        # ru_maxrss is in KiB on Linux
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
