"""Result folders that have one owner and survive a kill at any point.

Every command that writes a resumable folder (``inject``, ``protect``, ``search``) goes through this module:

* ``FolderLock(out)``: an advisory ``fcntl.flock`` on ``out/.sanitas.lock``, held for the whole run; a second
  writer is refused with ``<out> is in use by another sanitas process (pid N)`` (the holder's pid read from the
  kernel's lock table, ``/proc/locks``). The lock file is never written, so taking the lock changes nothing.
* ``atomic_write(path, data)``: temporary file in the same folder, fsync, rename, fsync of the folder: a reader
  (or a resume after SIGKILL) sees the old file or the new one, never a cut one.
* ``RunFolder``: the settings (what defines the results, with the checkpoints' content hashes) and the hashes of
  the fault lists, recorded atomically in ``settings.json`` before the first result; a resume whose settings,
  checkpoint content or fault list differ is refused with one line naming what differs, *before* anything in
  the folder is touched. A folder whose setup was interrupted (no ``settings.json`` yet, so no result either)
  is set up again from scratch.
* ``Journal``: per-unit results appended as JSON lines (flushed to the kernel per line, so a SIGKILL loses at
  most the line being written); a resume reads the valid prefix back.
* ``crash_point(phase)``: the test hook. ``SANITAS_CRASH_AT=<phase>`` makes the process SIGKILL itself when it
  reaches that point (phases: setup, first_chunk, mid, final_write).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
from pathlib import Path

from .errors import SanitasError

LOCK = ".sanitas.lock"
SETTINGS = "settings.json"
CRASH_ENV = "SANITAS_CRASH_AT"
PHASES = ("setup", "first_chunk", "mid", "final_write")
_TMP = re.compile(r"^\..+\.tmp\d+$")


def crash_point(phase: str) -> None:
    """SIGKILL this process here when ``SANITAS_CRASH_AT`` names ``phase`` (kill-at-every-phase tests)."""
    if os.environ.get(CRASH_ENV) == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def canonical(obj) -> bytes:
    """The canonical JSON bytes of ``obj`` (sorted keys, no spaces): what settings and hashes are made of."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def fsync_dir(d) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one (tmp, fsync, rename)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path, obj, indent: int | None = 1) -> None:
    atomic_write(path, json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n")


def remove_stale_tmp(d) -> None:
    """Delete temporary files left by a killed ``atomic_write`` (``.<name>.tmp<pid>``)."""
    for p in Path(d).iterdir():
        if _TMP.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _holder_pid(fd: int) -> str:
    """The pid holding the flock on open file ``fd`` (from /proc/locks; '?' where that is not readable)."""
    ino = os.fstat(fd).st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "?"
    for ln in lines:
        f = ln.split()
        if "->" in f:                     # a waiter, not a holder
            continue
        if len(f) >= 6 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(ino):
            return f[4]
    return "?"


class FolderLock:
    """Exclusive ownership of result folder ``out`` for the ``with`` block (created if missing).

    On an error inside the block, what the lock itself created (the lock file, the folder if it was new and
    is still empty) is removed again, so a refused run leaves nothing behind."""

    def __init__(self, out):
        self.out = Path(out)
        self.fd: int | None = None
        self._made_dir = self._made_file = False

    def __enter__(self):
        out = self.out
        if out.exists() and not out.is_dir():
            raise SanitasError(f"--out {out} exists and is not a folder")
        try:
            self._made_dir = not out.exists()
            out.mkdir(parents=True, exist_ok=True)
            path = out / LOCK
            while True:
                self._made_file = not path.exists()
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pid = _holder_pid(fd)
                    os.close(fd)
                    self._made_file = False
                    self._cleanup()
                    raise SanitasError(f"{out} is in use by another sanitas process (pid {pid})") from None
                try:                      # the file we locked must still be the one at the path
                    same = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
        except OSError as e:
            self._cleanup()
            raise SanitasError(f"cannot use {out} as an output folder: {e.strerror or e}") from None
        self.fd = fd
        return self

    def _cleanup(self):
        if self._made_file:
            (self.out / LOCK).unlink(missing_ok=True)
        if self._made_dir:
            try:
                self.out.rmdir()
            except OSError:
                pass

    def __exit__(self, et, ev, tb):
        if et is not None:
            self._cleanup()                # before unlocking: nobody can have taken the lock meanwhile
        if self.fd is not None:
            os.close(self.fd)              # releases the flock
            self.fd = None
        return False


def _diff(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class RunFolder:
    """The settings record of a resumable result folder (use inside ``FolderLock``).

    ``settings``: JSON-able dict of everything that defines the results (checkpoint content hashes included);
    ``lists``: {file name: bytes} of the fault lists those settings give, written beside ``settings.json``.
    ``results``: names of files that only exist once results do (they make a folder without settings foreign);
    ``scratch``: names of files of an interrupted setup, removed when the setup starts again."""

    def __init__(self, out, kind: str, results=(), scratch=(), labels: dict | None = None):
        self.out, self.kind = Path(out), kind
        self.results, self.scratch = tuple(results), tuple(scratch)
        self.labels = labels or {}

    @property
    def settings_path(self) -> Path:
        return self.out / SETTINGS

    def exists(self) -> bool:
        return self.settings_path.exists()

    def check(self, settings: dict, lists: dict, resume: bool) -> bool:
        """Read-only: refuse (``SanitasError``) unless the folder is new or resumable with these settings.

        Returns True when the folder holds this run already (a resume), False when it must be set up."""
        out, kind = self.out, self.kind
        if not self.exists():
            found = [n for n in self.results if (out / n).exists()]
            if found:
                raise SanitasError(f"{out} holds {found[0]} but no {SETTINGS} (an older or damaged {kind} folder); "
                                   "use another --out")
            return False
        if not resume:
            raise SanitasError(f"{out} already holds a {kind}: use --resume to continue it or another --out")
        try:
            rec = json.loads(self.settings_path.read_text())
            old, hashes = rec["settings"], rec["lists"]
            if rec.get("kind") != kind:
                raise SanitasError(f"{out} holds a {rec.get('kind')}, not a {kind}; use another --out")
        except (OSError, ValueError, KeyError, TypeError):
            raise SanitasError(f"{self.settings_path}: unreadable settings record; use another --out") from None
        new = json.loads(canonical(settings))
        diff = _diff(old, new)
        if diff:
            names = ", ".join(self.labels.get(k, k) for k in diff)
            raise SanitasError(f"{out} holds a different {kind} (differs in {names}); use another --out")
        for name, data in lists.items():
            if hashes.get(name) != sha256_bytes(data):
                raise SanitasError(f"{out}: the fault list these settings give differs from the stored one "
                                   f"({name}); use another --out")
            p = out / name
            if not p.exists() or sha256_file(p) != hashes[name]:
                raise SanitasError(f"{p} is missing or was modified since the {kind} started; use another --out")
        return True

    def setup(self, settings: dict, lists: dict) -> None:
        """Start afresh: clear an interrupted setup, write the lists, then ``settings.json`` (all atomic)."""
        for n in self.scratch + tuple(lists):
            (self.out / n).unlink(missing_ok=True)
        remove_stale_tmp(self.out)
        for name, data in lists.items():
            atomic_write(self.out / name, data)
        crash_point("setup")
        atomic_write_json(self.settings_path, {"kind": self.kind, "version": 1,
                                               "settings": json.loads(canonical(settings)),
                                               "lists": {n: sha256_bytes(d) for n, d in lists.items()}})


class Journal:
    """Append-only JSON-lines record of finished units ``{"k": key, "v": value}`` (``path``).

    ``load()`` reads the valid prefix (a line cut by a kill is dropped); ``open()`` truncates that cut tail and
    appends. Each ``put`` is flushed to the kernel (a SIGKILL keeps it); ``sync()`` fsyncs."""

    def __init__(self, path):
        self.path = Path(path)
        self.data: dict = {}
        self._good = 0
        self.fh = None

    def load(self) -> Journal:
        if not self.path.exists():
            return self
        raw = self.path.read_bytes()
        pos = 0
        lines = raw.split(b"\n")
        for i, ln in enumerate(lines):
            last = i == len(lines) - 1
            if last:                                  # no newline after it: cut by a kill (or empty)
                break
            try:
                d = json.loads(ln)
                self.data[d["k"]] = d["v"]
            except (ValueError, KeyError, TypeError):
                raise SanitasError(f"{self.path}: damaged at line {i + 1}; use another --out") from None
            pos += len(ln) + 1
        self._good = pos
        return self

    def open(self) -> Journal:
        self.fh = open(self.path, "ab")  # noqa: SIM115 (held open across puts; closed by close())
        self.fh.truncate(self._good)
        return self

    def get(self, key: str):
        return self.data.get(key)

    def put(self, key: str, value) -> None:
        line = json.dumps({"k": key, "v": value}, sort_keys=True, default=str)
        self.data[key] = json.loads(line)["v"]       # what a resume reads back, so both runs see the same value
        if self.fh is not None:
            self.fh.write(line.encode() + b"\n")
            self.fh.flush()

    def scope(self, prefix: str) -> _Scope:
        """A view whose keys are prefixed with ``prefix`` (one journal, several units of work)."""
        return _Scope(self, prefix)

    def sync(self) -> None:
        if self.fh is not None:
            self.fh.flush()
            os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self.fh is not None:
            self.sync()
            self.fh.close()
            self.fh = None


class _Scope:
    def __init__(self, journal: Journal, prefix: str):
        self.journal, self.prefix = journal, prefix

    def get(self, key: str):
        return self.journal.get(self.prefix + key)

    def put(self, key: str, value) -> None:
        self.journal.put(self.prefix + key, value)

    def scope(self, prefix: str) -> _Scope:
        return _Scope(self.journal, self.prefix + prefix)


def snapshot(d) -> dict:
    """{relative path: (sha256, size, mtime_ns)} of every file under ``d`` (refused-run tests)."""
    d = Path(d)
    return {str(p.relative_to(d)): (sha256_file(p), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(d.rglob("*")) if p.is_file()}


def run_cli_child(argv: list, env: dict | None = None, log: str | None = None) -> None:
    """``sanitas <argv>`` in a child process with extra environment ``env`` (e.g. ``{CRASH_ENV: "mid"}``),
    stdout and stderr to file ``log``: the target of the kill and concurrent-writer tests."""
    import sys

    from .cli import main
    os.environ.update(env or {})
    if log:
        fh = open(log, "w", buffering=1)  # noqa: SIM115 (the child's whole life)
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        sys.stdout = sys.stderr = fh
    rc = main(list(argv))
    sys.stdout.flush()
    os._exit(rc)


__all__ = [
    "CRASH_ENV",
    "LOCK",
    "PHASES",
    "SETTINGS",
    "FolderLock",
    "Journal",
    "RunFolder",
    "atomic_write",
    "atomic_write_json",
    "canonical",
    "crash_point",
    "remove_stale_tmp",
    "sha256_bytes",
    "sha256_file",
    "snapshot",
]
