"""The worker's signal handler takes no lock: a signal that arrives while the main thread
writes an event (holding the events lock) must not wait on that lock, or the worker hangs."""

from __future__ import annotations

import io
import json
import signal
import threading
from contextlib import redirect_stdout

from recsys_db import worker


def test_a_signal_during_an_event_write_does_not_wait_on_the_events_lock() -> None:
    events = worker.Events(as_json=True)
    w = worker.Worker("host=/nonexistent", worker.WorkerOptions(), events)
    with events._lock:  # the main thread is writing an event when SIGTERM comes
        handler = threading.Thread(target=w._on_signal, args=(signal.SIGTERM, None),
                                   daemon=True)
        handler.start()
        handler.join(timeout=5)
        assert not handler.is_alive(), "the signal handler waits on the events lock"
    out = io.StringIO()
    with redirect_stdout(out):
        w._announce()
        w._announce()  # once only
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["signal"], e["grace"]) for e in lines] == [
        ("stopping", "SIGTERM", None)]
    assert w._stopping


def test_stop_without_a_signal_announces_nothing() -> None:
    events = worker.Events(as_json=True)
    w = worker.Worker("host=/nonexistent", worker.WorkerOptions(), events)
    w.stop()
    out = io.StringIO()
    with redirect_stdout(out):
        w._announce()
    assert w._stopping and out.getvalue() == ""
