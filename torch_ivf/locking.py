"""Readers-writer locking of an index's public methods: searches and reads share the index, a change
(add, remove, train, reset, merge) has it alone, so a search never sees half of a change.

Writers are preferred: once one waits, new readers queue behind it, so a stream of searches cannot
starve an add. Both sides are re-entrant per thread (an index method calling another, or a subclass's
override calling super()); a thread that holds only the read side and asks for the write side would
wait for itself forever, so that raises RuntimeError instead.
"""
from __future__ import annotations

import contextlib
import functools
import threading

_get_ident = threading.get_ident
_CREATE = threading.Lock()  # guards the lazy creation of a lock for objects built without __init__


class RWLock:
    __slots__ = ("_cond", "_readers", "_writer", "_depth", "_waiting", "_local")

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0  # threads holding the read side
        self._writer = None  # ident of the thread holding the write side
        self._depth = 0  # the writer's re-entries
        self._waiting = 0  # writers queued
        self._local = threading.local()  # per thread: read depth, and whether it counts in _readers

    def __reduce__(self):
        # a copied index (copy.deepcopy, pickle) gets a lock of its own, held by no one
        return RWLock, ()

    def acquire_read(self) -> None:
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth:
            local.depth = depth + 1
            return
        if self._writer == _get_ident():  # reading inside one's own write: already exclusive
            local.depth, local.counted = 1, False
            return
        with self._cond:
            while self._writer is not None or self._waiting:
                self._cond.wait()
            self._readers += 1
        local.depth, local.counted = 1, True

    def release_read(self) -> None:
        local = self._local
        local.depth -= 1
        if local.depth == 0 and local.counted:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    def acquire_write(self) -> None:
        me = _get_ident()
        if self._writer == me:
            self._depth += 1
            return
        if getattr(self._local, "depth", 0):
            raise RuntimeError("an index change was asked for inside a read of the same index in the same "
                               "thread (it would wait for itself); finish the read first")
        with self._cond:
            self._waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer, self._depth = me, 1

    def release_write(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            with self._cond:
                self._writer = None
                self._cond.notify_all()


def lock_of(obj) -> RWLock:
    """The object's lock (``_rw``), created on first use for objects built without __init__."""
    lock = obj.__dict__.get("_rw")
    if lock is None:
        with _CREATE:
            lock = obj.__dict__.setdefault("_rw", RWLock())
    return lock


@contextlib.contextmanager
def writing(obj):
    """Hold obj's write side (for library code that changes an index outside its public methods)."""
    lock = lock_of(obj)
    lock.acquire_write()
    try:
        yield
    finally:
        lock.release_write()


def _guard(fn, write: bool, undo):
    @functools.wraps(fn)
    def guarded(self, *args, **kwargs):
        lock = self.__dict__.get("_rw") or lock_of(self)
        if not write:
            lock.acquire_read()
            try:
                return fn(self, *args, **kwargs)
            finally:
                lock.release_read()
        lock.acquire_write()
        try:
            if undo is None:
                return fn(self, *args, **kwargs)
            saved = undo.take(self)
            try:
                return fn(self, *args, **kwargs)
            except BaseException:
                undo.restore(saved)
                raise
        finally:
            lock.release_write()

    guarded._guarded = True
    return guarded


def guard_methods(cls, reads, writes, undone=(), undo=None) -> None:
    """Install locked versions of the named methods that ``cls`` resolves (its own or a mixin's) and
    that are not locked already. Methods in ``undone`` also restore ``undo.take``'s snapshot when
    they raise, so a failed call leaves the object as it was."""
    for names, write in ((reads, False), (writes, True)):
        for name in names:
            fn = getattr(cls, name, None)
            if fn is None or not callable(fn) or getattr(fn, "_guarded", False) or isinstance(fn, type):
                continue
            setattr(cls, name, _guard(fn, write, undo if name in undone else None))
