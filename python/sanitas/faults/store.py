"""Persistent campaign store: one SQLite file per campaign, append-only, crash-safe, resumable.

Tables::

    meta(key TEXT PRIMARY KEY, value TEXT)                        campaign spec (JSON), fault-free figures
    faults(fault_id TEXT PRIMARY KEY, seq INTEGER, site, layer,   the fault list in campaign order
           bit INTEGER, kind TEXT, rate REAL, record TEXT)        (record = the Fault / trial as JSON)
    inputs(input_id INTEGER PRIMARY KEY, label, clean_pred)       the evaluated inputs (test-split indices)
    results(fault_id, input_id, outcome, pred,                    one row per experiment:
            PRIMARY KEY(fault_id, input_id)) WITHOUT ROWID        0 masked, 1 SDC-benign, 2 critical
                                                                  (one B-tree: ~2x faster appends than a
                                                                  rowid table + unique index)

The setup (fault list, inputs, meta) is one transaction (``setup``), made after the campaign's
``settings.json`` is on disk (``sanitas.runfolder``), so a store either holds a whole setup or none.

WAL journal with ``synchronous=NORMAL``: a committed transaction survives a crash of the process (SIGKILL)
and readers (a report, a progress poll) never block the writer. Results are committed per chunk, each chunk
holding every input of its faults, so a fault is either complete or absent; ``INSERT OR IGNORE`` on the
(fault_id, input_id) key makes a replayed chunk a no-op: nothing lost, nothing duplicated. The compute kernels
release the GIL (numba ``nogil``), so the writer thread's inserts overlap them on another core.
"""
from __future__ import annotations

import json
import queue
import sqlite3
import threading
from pathlib import Path

import numpy as np

from ..errors import SanitasError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults(fault_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, site TEXT, layer TEXT,
                                  bit INTEGER, kind TEXT, rate REAL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs(input_id INTEGER PRIMARY KEY, label INTEGER, clean_pred INTEGER);
CREATE TABLE IF NOT EXISTS results(fault_id TEXT NOT NULL, input_id INTEGER NOT NULL, outcome INTEGER NOT NULL,
                                   pred INTEGER NOT NULL, PRIMARY KEY(fault_id, input_id)) WITHOUT ROWID;
"""


class Store:
    """An open campaign database (``path``); use as a context manager or call ``close()``."""

    def __init__(self, path, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise SanitasError(f"campaign database not found: {self.path}")
            self.con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = sqlite3.connect(self.path, timeout=30)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")
            self.con.executescript(SCHEMA)
            self.con.commit()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        self.con.close()

    # ------------------------------------------------------------------------------------------ meta
    def get_meta(self, key: str, default=None):
        row = self.con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, **kv):
        with self.con:
            self.con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
                                 [(k, json.dumps(v, sort_keys=True)) for k, v in kv.items()])

    # ------------------------------------------------------------------------------------------ setup
    def n_faults(self) -> int:
        return self.con.execute("SELECT COUNT(*) FROM faults").fetchone()[0]

    def add_faults(self, rows):
        """rows: (fault_id, seq, site, layer, bit, kind, rate, record_json); one transaction."""
        with self.con:
            self.con.executemany("INSERT OR IGNORE INTO faults VALUES(?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def setup(self, fault_rows, ids, labels, clean_pred, **meta):
        """The whole campaign setup (fault list, inputs, meta) in ONE transaction: present entirely or not at all."""
        with self.con:
            self.con.executemany("INSERT OR IGNORE INTO faults VALUES(?, ?, ?, ?, ?, ?, ?, ?)", fault_rows)
            self.con.executemany("INSERT OR IGNORE INTO inputs VALUES(?, ?, ?)",
                                 [(int(i), int(l), int(p)) for i, l, p in zip(ids, labels, clean_pred)])
            self.con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
                                 [(k, json.dumps(v, sort_keys=True)) for k, v in meta.items()])

    def records(self) -> list[str]:
        """The stored fault / trial records (JSON text) in campaign order."""
        return [r[0] for r in self.con.execute("SELECT record FROM faults ORDER BY seq")]

    def add_inputs(self, ids, labels, clean_pred):
        with self.con:
            self.con.executemany("INSERT OR IGNORE INTO inputs VALUES(?, ?, ?)",
                                 [(int(i), int(l), int(p)) for i, l, p in zip(ids, labels, clean_pred)])

    # ------------------------------------------------------------------------------------------ results
    def done_faults(self, n_inputs: int) -> set[str]:
        """Fault ids with all ``n_inputs`` results stored (the ones a resume skips)."""
        q = "SELECT fault_id FROM results GROUP BY fault_id HAVING COUNT(*) >= ?"
        return {r[0] for r in self.con.execute(q, (n_inputs,))}

    def add_results(self, fault_ids, input_ids, outcome: np.ndarray, pred: np.ndarray):
        """Append one chunk (outcome/pred of shape (F, I)) in ONE transaction (the commit point)."""
        iids = [int(i) for i in input_ids]
        oc, pr = np.asarray(outcome).tolist(), np.asarray(pred).tolist()
        rows = [(fid, iid, o, p) for fid, orow, prow in zip(fault_ids, oc, pr) for iid, o, p in zip(iids, orow, prow)]
        with self.con:
            self.con.executemany("INSERT OR IGNORE INTO results VALUES(?, ?, ?, ?)", rows)

    def n_results(self) -> int:
        return self.con.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def table(self) -> list[tuple]:
        """All results as sorted (fault_id, input_id, outcome, pred) tuples (for equality checks)."""
        return self.con.execute("SELECT fault_id, input_id, outcome, pred FROM results "
                                "ORDER BY fault_id, input_id").fetchall()

    def joined(self) -> list[dict]:
        """Every experiment joined with its fault and input: dicts for reports."""
        q = ("SELECT r.fault_id, r.input_id, r.outcome, r.pred, f.site, f.layer, f.bit, f.kind, f.rate, f.seq, "
             "i.label, i.clean_pred FROM results r JOIN faults f USING(fault_id) JOIN inputs i USING(input_id)")
        cols = ["fault_id", "input_id", "outcome", "pred", "site", "layer", "bit", "kind", "rate", "seq",
                "label", "clean_pred"]
        return [dict(zip(cols, r)) for r in self.con.execute(q)]


class AsyncWriter:
    """Appends result chunks from a background thread (its own connection; one transaction per chunk), so the
    SQLite work overlaps the computation. ``close()`` drains the queue and re-raises a writer error. On a crash,
    chunks still queued are simply not committed: a resume recomputes them."""

    _STOP = object()

    def __init__(self, path, input_ids, maxsize: int = 32, on_commit=None):
        self.path, self.input_ids = Path(path), [int(i) for i in input_ids]
        self.on_commit = on_commit          # called with the number of chunks committed so far (crash hooks)
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.t = threading.Thread(target=self._run, name="sanitas-store-writer", daemon=True)
        self.t.start()

    def _run(self):
        try:
            st = Store(self.path)
        except BaseException as e:  # noqa: BLE001
            self.error = e
            return
        n = 0
        try:
            while True:
                item = self.q.get()
                if item is self._STOP:
                    break
                if self.error is None:
                    st.add_results(item[0], self.input_ids, item[1], item[2])
                    n += 1
                    if self.on_commit is not None:
                        self.on_commit(n)
        except BaseException as e:  # noqa: BLE001
            self.error = e
        finally:
            st.close()

    def put(self, fault_ids, outcome, pred):
        if self.error is not None:
            raise SanitasError(f"campaign store: {self.error}")
        self.q.put((list(fault_ids), outcome, pred))

    def close(self):
        self.q.put(self._STOP)
        self.t.join()
        if self.error is not None:
            raise SanitasError(f"campaign store: {self.error}")


__all__ = ["SCHEMA", "AsyncWriter", "Store"]
