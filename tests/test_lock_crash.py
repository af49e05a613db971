"""Append locks survive a SIGKILL at any instant of their creation.

The lock file is created atomically (the owner record is written to a private
temporary file, then hard-linked to the lock's name), so a writer killed while
taking the lock leaves no lock or a complete one: the next writer takes the lock
at once (a complete lock of a dead process is stale), and the temporary file the
killed writer left is removed. Before, a kill between creating the lock file and
writing it left an empty lock that blocked appends ("already open for appending
by None"), which a CI run of the random-time kill test hit.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from embstore import Store
from embstore.store import atomic
from embstore.store import lock as lock_mod
from embstore.store.lock import FileLock

CTX = mp.get_context("fork")


def _die_in_create(path: str, where: str) -> None:
    """Take the lock, SIGKILLing this process at ``where`` in the creation."""
    real_link = os.link

    def link(src, dst):
        if where == "before_link":
            os.kill(os.getpid(), signal.SIGKILL)
        real_link(src, dst)
        if where == "after_link":
            os.kill(os.getpid(), signal.SIGKILL)

    atomic.os.link = link  # type: ignore[assignment]  # only in this forked child
    FileLock(path, "test").acquire()
    os._exit(3)  # not reached


@pytest.mark.parametrize("where", ["before_link", "after_link"])
def test_kill_while_taking_the_lock_leaves_no_blocking_lock(tmp_path, where):
    path = str(tmp_path / "x.lock")
    proc = CTX.Process(target=_die_in_create, args=(path, where))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir()]
    if where == "before_link":
        assert len(leftovers) == 1 and leftovers[0].startswith(f"x.lock.{proc.pid}.")
    else:
        assert "x.lock" in leftovers  # a complete lock of a dead process
    t0 = time.perf_counter()
    lk = FileLock(path, "test")
    lk.acquire()  # at once: no empty lock to wait out
    assert time.perf_counter() - t0 < 2
    assert lk.held and [p.name for p in tmp_path.iterdir()] == ["x.lock"]  # temporaries gone
    lk.release()
    assert list(tmp_path.iterdir()) == []


def test_the_lock_file_is_never_empty(tmp_path, monkeypatch):
    """What another process can observe between the calls of a lock's creation."""
    path = tmp_path / "x.lock"
    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append(path.exists())
        real_link(src, dst)
        seen.append(path.read_bytes())

    monkeypatch.setattr(atomic.os, "link", link)
    FileLock(path, "t").acquire()
    assert seen[0] is False and b'"pid": %d' % os.getpid() in seen[1]


def test_without_hard_links_the_exclusive_create_is_used(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_link)
    a, b = FileLock(tmp_path / "x.lock", "t"), FileLock(tmp_path / "x.lock", "t")
    a.acquire()
    assert lock_mod.parse_owner((tmp_path / "x.lock").read_bytes())["pid"] == os.getpid()
    with pytest.raises(Exception, match="already open for appending"):
        b.acquire()
    a.release()
    assert list(tmp_path.iterdir()) == []


def test_store_appends_right_after_a_writer_killed_while_locking(tmp_path):
    path = str(tmp_path / "r.zarr")
    with Store.create(path, variables={"v": ("feature",)}) as st:
        st.append(np.arange(4), {"v": np.ones((4, 3), np.float32)})
    lock_path = None
    with Store.open(path, mode="a") as st:
        lock_path = st._writer.lock.path  # where this backend keeps its append lock
    proc = CTX.Process(target=_die_in_create, args=(str(lock_path), "after_link"))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    with Store.open(path, mode="a") as st:
        st.append(np.arange(4, 6), {"v": np.zeros((2, 3), np.float32)})
    assert Store.open(path).read("v").shape == (6, 3)
