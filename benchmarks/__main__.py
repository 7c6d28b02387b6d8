"""``python -m benchmarks --scale 1m [--scale ml100k ...]``: run, save results, write BENCHMARKS.md.

``--scale ranker`` measures the two-stage recommender (ALS + learned ranker) on MovieLens 100K
over five seeds (``benchmarks/ranker.py``). ``--scale content`` measures cold start from content
features on MovieLens 100K (held-out movies known by genres, year and title text), text
embedding throughput and the delay from a new item's INSERT to its audience through a worker
(``benchmarks/content.py``). ``--scale spark`` trains the 1m and 10m synthetic logs with the
Spark engine (``local[2]``) and the implicit engine side by side (``benchmarks/spark.py``).

Each scale runs in a fresh database on the embedded server (or ``--database-url``'s server);
its results go to ``benchmarks/results/<scale>.json`` and BENCHMARKS.md is rewritten from every
results file there, so scales can be run one at a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks import content, ranker, report, spark, suite, synthetic
from recsys_db import embedded, install

RESULTS = Path(__file__).parent / "results"
SCALES = ["ml100k", *synthetic.SCALES, "ranker", "content", "spark"]


def main() -> None:
    """Parse arguments and run the chosen scales."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--scale", action="append", choices=SCALES, default=[],
                        help="data set to run (repeatable): ml100k (real), a synthetic size, "
                        "ranker (ALS + ranker on MovieLens 100K, five seeds), content "
                        "(cold start from content, embeddings, new-item delay) or spark "
                        "(the Spark engine beside implicit on the 1m and 10m logs)")
    parser.add_argument("--spark-size", action="append", choices=list(synthetic.SCALES),
                        help="synthetic sizes of --scale spark (repeatable; default: "
                        f"{' and '.join(spark.SIZES)}); other sizes keep their saved figures")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite the report from the saved results")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed figure")
    parser.add_argument("--database-url", help="server to use (default: embedded, in "
                        "$RECSYS_DATA_DIR or /tmp/recsys-bench)")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, not {args.repeat}")
    if not args.scale and not args.report_only:
        parser.error("give at least one --scale, or --report-only")
    if args.report_only:
        args.output.write_text(report.render(RESULTS))
        print(f"wrote {args.output}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = Path(os.environ["RECSYS_DATA_DIR"]) if os.environ.get("RECSYS_DATA_DIR") \
        else Path("/tmp/recsys-bench/pgdata")
    server = args.database_url or embedded.start(data)
    RESULTS.mkdir(exist_ok=True)
    for scale in args.scale:
        name = f"recsys_bench_{scale}"
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = make_conninfo(server, dbname=name)
        install.install(url)
        if scale == "ranker":
            results = ranker.run(url)
        elif scale == "content":
            results = content.run(url, args.repeat)
        elif scale == "spark":
            results = spark.run(url, tuple(args.spark_size or spark.SIZES))
            earlier = RESULTS / "spark.json"
            if earlier.exists():  # sizes not run this time keep their figures
                results["sizes"] = {**json.loads(earlier.read_text())["sizes"],
                                    **results["sizes"]}
        else:
            results = suite.run(url, scale, args.repeat)
        results["machine"] = report.machine(url)
        results["repeats"] = args.repeat
        (RESULTS / f"{scale}.json").write_text(json.dumps(results, indent=1, default=str))
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))
    args.output.write_text(report.render(RESULTS))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
