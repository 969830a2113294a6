"""The disk spool: batches TEA could not take yet, one gzip file each, sent oldest first, bounded in bytes.

A file is written under a temporary name and renamed into place, so a reader never sees half a
batch; names start with the write time in nanoseconds, so sorting them gives the order they were
written in, across restarts of the process. Files are not fsynced: they survive the process (a
crash, a restart, ``kill -9``), not a crash of the machine. Several processes may share a
directory: each file is locked (``flock``, where the platform has it) while it is being sent, and
re-checked after locking, so no two processes send it at once. Past ``max_bytes`` the oldest files
are deleted and their events counted as dropped.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Tuple

try:
    import fcntl
except ImportError:  # Windows: no cross-process locking; give each process its own spool directory
    fcntl = None  # type: ignore[assignment]

from tea_client.transport import gzip_bytes

log = logging.getLogger(__name__)
SUFFIX = ".json.gz"
_TMP_MAX_AGE_S = 3600.0


class Entry(NamedTuple):
    path: Path
    channel: str
    count: int
    size: int
    body: bytes    # the JSON batch, as signed
    packed: bytes  # the same, gzip-compressed, as sent
    handle: Any    # the open, locked file; released by done() / release()


def _parse(name: str) -> Optional[Tuple[str, int]]:
    """``<ns>-<pid>-<seq>-<count>.<channel>.json.gz`` → (channel, count)."""
    if not name.endswith(SUFFIX):
        return None
    stem, _, channel = name[: -len(SUFFIX)].rpartition(".")
    parts = stem.split("-")
    if len(parts) != 4 or not parts[3].isdigit() or not channel:
        return None
    return channel, int(parts[3])


class Spool:
    def __init__(self, directory: "os.PathLike[str] | str", max_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._seq = itertools.count()
        self._files: List[Tuple[str, int]] = []  # (name, size), oldest first
        self.bytes = 0
        self._scanned_at = 0.0
        self._clean_tmp()
        self.rescan()

    def _clean_tmp(self) -> None:
        now = time.time()
        for path in self.directory.glob("*.tmp"):
            try:
                if now - path.stat().st_mtime > _TMP_MAX_AGE_S:  # a writer that died mid-write
                    path.unlink()
            except OSError:
                pass

    def rescan(self) -> None:
        """Re-read the directory (another process may have added or sent files)."""
        files = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if _parse(entry.name) is not None:
                    try:
                        files.append((entry.name, entry.stat().st_size))
                    except OSError:
                        continue
        files.sort()
        self._files = files
        self.bytes = sum(size for _, size in files)
        self._scanned_at = time.monotonic()

    @property
    def files(self) -> int:
        return len(self._files)

    def put(self, channel: str, body: bytes, count: int, level: int = 1) -> int:
        """Write one batch; returns how many spooled events the byte bound made it delete (oldest first)."""
        packed = gzip_bytes(body, level)
        name = "%020d-%d-%06d-%d.%s%s" % (time.time_ns(), os.getpid(), next(self._seq) % 1_000_000, count,
                                          channel, SUFFIX)
        tmp = self.directory / (name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(packed)
        os.replace(tmp, self.directory / name)
        self._files.append((name, len(packed)))
        self.bytes += len(packed)
        return self._trim()

    def _trim(self) -> int:
        dropped = 0
        while self.bytes > self.max_bytes and len(self._files) > 1:
            name, size = self._files.pop(0)
            self.bytes -= size
            try:
                (self.directory / name).unlink()
            except FileNotFoundError:
                continue  # another process sent it meanwhile
            parsed = _parse(name)
            dropped += parsed[1] if parsed else 0
        return dropped

    def next(self) -> Optional[Entry]:
        """The oldest batch no other process is sending, locked; None when there is none."""
        if not self._files or time.monotonic() - self._scanned_at > 5.0:
            self.rescan()
        for name, size in list(self._files):
            entry = self._open(name, size)
            if entry is not None:
                return entry
        return None

    def _open(self, name: str, size: int) -> Optional[Entry]:
        path = self.directory / name
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            self._forget(name, size)
            return None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    return None  # another process is sending it
                if not path.exists() or os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino:
                    handle.close()  # sent and deleted between our open and our lock
                    self._forget(name, size)
                    return None
            packed = handle.read()
            body = zlib.decompress(packed, 47)
        except (OSError, zlib.error) as exc:
            handle.close()
            log.warning("tea-client: dropping unreadable spool file %s: %s", name, exc)
            self._delete(name, size)
            return None
        channel, count = _parse(name) or ("events", 0)
        return Entry(path, channel, count, size, body, packed, handle)

    def done(self, entry: Entry) -> None:
        """The batch was delivered (or refused for good): delete it, then unlock."""
        try:
            self._delete(entry.path.name, entry.size)
        finally:
            entry.handle.close()

    def release(self, entry: Entry) -> None:
        entry.handle.close()

    def _delete(self, name: str, size: int) -> None:
        try:
            (self.directory / name).unlink()
        except FileNotFoundError:
            pass
        self._forget(name, size)

    def _forget(self, name: str, size: int) -> None:
        try:
            self._files.remove((name, size))
            self.bytes -= size
        except ValueError:
            pass
