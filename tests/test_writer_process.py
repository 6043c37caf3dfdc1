"""The hub's writer process: the pipe framing, and kill -9 of either hub process alone (SPEC
section 9 invariant after each)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from hub.pipes import PipeEnd, widen
from simulators.hall import Hall, child_pids, wait_for

from .invariant import assert_invariant, events_by_device


def _pipe() -> tuple[PipeEnd, PipeEnd]:
    r, w = os.pipe()
    return PipeEnd(r), PipeEnd(w)


def test_frames_cross_the_pipe_whole_in_order_and_in_few_reads() -> None:
    reader, writer = _pipe()
    widen(writer.fd)
    batches = [[("t", bytes([i % 256]) * 300, i, i)] for i in range(500)]
    for batch in batches:
        writer.send(batch)
    writer.close()
    got: list[object] = []
    takes = 0
    while True:
        try:
            got.extend(reader.take())
        except EOFError:
            break
        takes += 1
    assert got == batches
    assert takes < 10  # whole chunks, not one read per frame


def test_a_frame_split_across_writes_waits_for_its_end_and_a_cut_frame_is_the_end() -> None:
    reader, writer = _pipe()
    big = b"x" * 3_000_000  # larger than the pipe: the reader must take it in pieces
    sender = threading.Thread(target=writer.send, args=(big,))
    sender.start()
    assert reader.take() == [big]
    sender.join()
    os.write(writer.fd, b"\x10\x00\x00\x00abc")  # a header promising 16 bytes, then the writer dies
    writer.close()
    assert reader.wait(0)  # readable: a partial frame, then the end
    with pytest.raises(EOFError):
        reader.take()


def _pids(hall: Hall) -> tuple[int, int]:
    hub = hall.procs["hub"].pid
    writer = wait_for(lambda: _writer_of(hub), 20, "the writer process to start")
    return hub, writer


def _writer_of(hub: int) -> int | None:
    writers = [pid for pid in child_pids(hub) if b"hub.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return writers[0] if writers else None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _hall_under_load(hall: Hall) -> tuple[int, int]:
    """Broker, hub and a pressing terminal; (daemon pid, writer pid) once the hub stores."""
    hall.add_device("T01", "W01")
    hall.start_broker()
    hall.start_hub()
    hall.sim_terminal("T01", 400, 150)
    wait_for(lambda: events_by_device(hall).get("T01", 0) >= 50, 60, "the hub to store some events")
    return _pids(hall)


def test_kill_9_of_the_writer_stops_the_hub_with_an_error_and_loses_nothing(hall: Hall) -> None:
    _hub, writer = _hall_under_load(hall)
    os.kill(writer, signal.SIGKILL)
    assert hall.procs["hub"].wait(timeout=30) != 0
    assert "writer process died" in hall.log("hub")
    hall.start_hub()  # what systemd does
    assert hall.procs["sim-T01"].wait(timeout=180) == 0
    assert_invariant(hall, ["T01"])


def test_kill_9_of_the_daemon_alone_ends_its_writer_and_loses_nothing(hall: Hall) -> None:
    hub, writer = _hall_under_load(hall)
    os.kill(hub, signal.SIGKILL)  # the daemon only, not its process group
    hall.procs["hub"].wait(timeout=10)
    wait_for(lambda: not _alive(writer), 20, "the orphaned writer to exit")
    hall.start_hub()
    assert hall.procs["sim-T01"].wait(timeout=180) == 0
    assert_invariant(hall, ["T01"])
