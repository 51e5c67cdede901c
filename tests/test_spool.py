"""The sink's spools: FIFO order, dropping the oldest when full, and a file that keeps what
was appended through a kill -9 and belongs to one process at a time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streamer.errors import SinkError
from streamer.sinks.spool import DiskSpool, MemorySpool, Pending, Spool, open_spool

REPO = Path(__file__).resolve().parents[1]


def pending(n: int, key: str = "s:p:cam1") -> Pending:
    fields = {"event": f'{{"id":"e{n}","seq":{n}}}', "type": "detections", "source": "cam1"}
    return Pending(key, f"e{n}", fields, 1000 + n)


def ids(events: list[Pending]) -> list[str]:
    return [p.event_id for p in events]


@pytest.fixture(params=["memory", "disk"])
def make_spool(request, tmp_path):
    opened: list[Spool] = []

    def make(max_events: int) -> Spool:
        path = tmp_path / "spool.db" if request.param == "disk" else None
        opened.append(open_spool(path, max_events))
        return opened[-1]

    yield make
    for spool in opened:
        spool.close()


def test_events_come_out_in_the_order_they_went_in(make_spool):
    spool = make_spool(100)
    assert spool.extend([pending(i) for i in range(1, 6)]) == 0
    assert spool.extend([pending(i, "s:p:cam2") for i in range(6, 9)]) == 0
    assert len(spool) == 8
    assert ids(spool.head(3)) == ["e1", "e2", "e3"]
    assert ids(spool.head(3)) == ["e1", "e2", "e3"]  # head leaves them in place
    spool.drop(3)
    assert ids(spool.head(100)) == ["e4", "e5", "e6", "e7", "e8"]
    assert spool.head(1)[0] == pending(4)
    assert spool.keys() == {"s:p:cam1", "s:p:cam2"}


def test_a_full_spool_drops_the_oldest_and_says_how_many(make_spool):
    spool = make_spool(5)
    assert spool.extend([pending(i) for i in range(1, 5)]) == 0
    assert spool.extend([pending(i) for i in range(5, 8)]) == 2
    assert ids(spool.head(10)) == ["e3", "e4", "e5", "e6", "e7"]
    assert spool.extend([pending(i) for i in range(8, 15)]) == 7  # more than it holds
    assert ids(spool.head(10)) == ["e10", "e11", "e12", "e13", "e14"]
    assert len(spool) == 5


def test_what_is_left_in_memory_is_lost_and_in_a_file_is_kept(tmp_path):
    memory = MemorySpool(10)
    memory.extend([pending(1), pending(2)])
    assert memory.close() == 2
    disk = DiskSpool(tmp_path / "spool.db", 10)
    disk.extend([pending(1), pending(2)])
    assert disk.close() == 0
    again = DiskSpool(tmp_path / "spool.db", 10)
    assert again.recovered == 2
    # An earlier process's monotonic stamps mean nothing now: no latency for them.
    assert [p.captured_ns for p in again.head(2)] == [None, None]
    again.extend([pending(3)])
    assert ids(again.head(3)) == ["e1", "e2", "e3"]
    assert again.head(3)[2].captured_ns == 1003
    again.close()


def test_what_extend_wrote_survives_a_kill_9_of_the_process(tmp_path):
    path = tmp_path / "sub" / "spool.db"  # its folder is made
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from streamer.sinks.spool import DiskSpool, Pending
        spool = DiskSpool(Path({str(path)!r}), 1000)
        for batch in range(3):
            spool.extend([Pending("k", f"e{{batch}}-{{i}}", {{"event": "{{}}", "type": "t",
                                   "source": "s"}}, None) for i in range(100)])
        spool.drop(50)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60)
    assert done.returncode == -9
    spool = DiskSpool(path, 1000)
    try:
        assert spool.recovered == 250
        held = ids(spool.head(1000))
        assert held == [f"e{b}-{i}" for b in range(3) for i in range(100)][50:]
    finally:
        spool.close()


def test_a_spool_file_is_used_by_one_process_at_a_time(tmp_path):
    first = DiskSpool(tmp_path / "spool.db", 10)
    try:
        with pytest.raises(SinkError, match=r"spool\.db: event spool file in use by another"):
            DiskSpool(tmp_path / "spool.db", 10)
    finally:
        first.close()
    DiskSpool(tmp_path / "spool.db", 10).close()  # free again


def test_a_file_that_is_no_spool_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database, but some notes of mine\n" * 100)
    with pytest.raises(SinkError, match=r"notes.txt: event spool file cannot be used \(file is"):
        DiskSpool(path, 10)
    assert path.read_text().startswith("not a database")
