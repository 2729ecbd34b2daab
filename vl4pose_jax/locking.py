"""Exclusive advisory locks on folders that a killed holder cannot leave stuck.

    with locking.FolderLock(workdir, "run") as lock:   # raises LockedError naming the holder
        ...

A lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on `FOLDER/.<name>.lock`, held through an open file
descriptor: the kernel drops it when the holder exits in any way (kill -9 included), so a stale
lock never blocks a later launch; the file itself stays and is overwritten by the next holder.
The holder writes its host, pid, start time and command line into the file, which the refused
launch quotes. Locks are re-entrant within one process (a count per folder and name), since the
command line and the library both take the workdir lock.

Shared file systems: on Linux, `flock` on NFS is carried out as a whole-file POSIX lock through
the server (NLM for NFSv3, the protocol's own locks for NFSv4), so hosts that mount the same
export exclude each other as long as the server supports locking (`nolock` mounts do not); a
host that dies while holding the lock keeps it until the server reclaims it (the NFSv4 lease,
typically 90 s). Other shared file systems (Lustre with `flock`, GPFS, CephFS) give the same
guarantee when mounted with cluster-wide flock support; with `localflock` or without it the lock
only excludes processes of one host.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
import threading


class LockedError(Exception):
    """The folder is locked by another live process; the message names it."""


class LockIOError(OSError):
    """The lock file cannot be created (the folder is a file, read-only, ...); one paragraph."""


_HELD: dict = {}   # (resolved lock path) -> [fd, count]
_GUARD = threading.Lock()


def _describe(path: pathlib.Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (it has not written its details yet)"
    return (f"process {info.get('pid')} on host {info.get('host')}, started "
            f"{info.get('started')} ({info.get('command', '?')})")


class FolderLock:
    """An exclusive lock on `folder` named `name`; see the module docstring."""

    def __init__(self, folder, name: str = "run", *, blocking: bool = False):
        self.folder = pathlib.Path(folder)
        self.path = self.folder / f".{name}.lock"
        self.blocking = blocking   # wait for the holder instead of raising LockedError
        self._key = None

    def acquire(self) -> "FolderLock":
        if self.folder.exists() and not self.folder.is_dir():
            raise LockIOError(errno.ENOTDIR, f"{self.folder} exists and is not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            key = str(self.path.resolve())
            with _GUARD:
                if key in _HELD:
                    _HELD[key][1] += 1
                    self._key = key
                    return self
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        except OSError as err:
            raise LockIOError(err.errno, f"cannot write to {self.folder} "
                              f"({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockedError(f"{self.folder} is in use by {_describe(self.path)}; its lock "
                                  f"is {self.path}") from None
            raise LockIOError(err.errno, f"cannot lock {self.path} ({err.strerror or err}); "
                              "is the file system mounted without lock support?") from None
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "command": " ".join(sys.argv)[:300]}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass   # the lock holds without the details (e.g. a full disk)
        with _GUARD:
            _HELD[key] = [fd, 1]
        self._key = key
        return self

    def release(self):
        if self._key is None:
            return
        with _GUARD:
            entry = _HELD[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[self._key]
                os.close(entry[0])   # drops the flock
        self._key = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
