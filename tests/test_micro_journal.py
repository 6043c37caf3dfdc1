"""The firmware journal on disk: torn tails, seq never reused, epoch and last_seq surviving
compaction; run in the real MicroPython interpreter with a 64 KB heap, read back from CPython."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terminal.errors import JournalError
from terminal.micro_host import iter_records, journal_summary

try:
    from .micro_harness import run_micropython
except ImportError:
    from micro_harness import run_micropython  # type: ignore[no-redef]


def mpy_journal(folder: Path, body: str) -> list[object]:
    """Open the journal of device T01 in ``folder`` in MicroPython, run ``body`` (with ``j`` the
    journal and ``out`` a list), print ``out`` as JSON; return it."""
    script = (
        f"import json, os, journal\nj = journal.Journal({str(folder)!r}, 'T01')\nout = []\n"
        + body
        + "\nj.close()\nprint(json.dumps(out))\n"
    )
    return list(json.loads(run_micropython(script).strip().splitlines()[-1]))


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("seg-*.log"), key=lambda p: int(p.name[4:-4]))


def test_appends_survive_reopen_and_read_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    (first,) = mpy_journal(
        folder, "for i in range(300):\n    j.append({'kind': 'rating', 'n': i})\nout.append(j.summary())"
    )
    (again,) = mpy_journal(folder, "out.append([s for s, b in j.rows(120, 20)])")
    assert first["last_seq"] == 300 and first["pending"] == 300  # type: ignore[index]
    assert again == list(range(121, 141))
    seqs = [s for seg in segments(folder) for s, _b in iter_records(seg, int(seg.name[4:-4]))]
    assert seqs == list(range(1, 301))
    assert journal_summary(folder) == {
        "device": "T01",
        "epoch": first["epoch"],
        "last_seq": 300,  # type: ignore[index]
        "acked": 0,
        "pending": 300,
    }


@pytest.mark.parametrize("damage", ["truncate_mid_payload", "truncate_mid_header", "bad_crc"])
def test_torn_tail_is_cut_and_seq_continues_without_reuse(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "journal"
    mpy_journal(folder, "for i in range(5):\n    j.append({'kind': 'rating', 'n': i})")
    (seg,) = segments(folder)
    data = seg.read_bytes()
    last_record = data.rindex(b"\x05\x00\x00\x00\x00\x00\x00\x00") - 8  # header of seq 5
    if damage == "truncate_mid_payload":
        damaged = data[:-3]
    elif damage == "truncate_mid_header":
        damaged = data[: last_record + 5]
    else:
        damaged = data[:-2] + bytes([data[-2] ^ 0xFF]) + data[-1:]
    seg.write_bytes(damaged)
    # CPython's reader stops at the damage and does not change the file.
    assert journal_summary(folder)["last_seq"] == 4
    out = mpy_journal(
        folder,
        "out.append(j.summary()); out.append(j.cut_bytes)\n"
        "out.append(j.append({'kind': 'rating', 'n': 'after'}))\n"
        "out.append([(s, b['n']) for s, b in j.rows(0, 10)])",
    )
    summary, cut, seq, rows = out
    assert summary["last_seq"] == 4  # type: ignore[index]
    assert cut == len(damaged) - last_record  # exactly the torn record, nothing before it
    assert seq == 5  # the torn record was never committed: its seq is the next one
    assert rows == [[1, 0], [2, 1], [3, 2], [4, 3], [5, "after"]]
    assert seg.read_bytes()[:last_record] == data[:last_record]  # committed records untouched
    assert journal_summary(folder)["last_seq"] == 5


def test_epoch_and_last_seq_survive_full_ack_and_compaction(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    first = mpy_journal(
        folder,
        "for i in range(256):\n    j.append({'kind': 'rating'})\n"
        "out.append(j.summary()); out.append(j.ack(256)); out.append(sorted(os.listdir(" + repr(str(folder)) + ")))",
    )
    before, moved, files = first
    assert moved is True
    assert files == ["meta.json"]  # every record acked: every segment deleted
    assert journal_summary(folder) == {
        "device": "T01",
        "epoch": before["epoch"],
        "last_seq": 256,  # type: ignore[index]
        "acked": 256,
        "pending": 0,
    }
    after = mpy_journal(
        folder, "out.append(j.summary()); out.append(j.append({'kind': 'rating'}));out.append(j.ack(100))"
    )
    assert after[0]["epoch"] == before["epoch"] and after[0]["last_seq"] == 256  # type: ignore[index]
    assert after[1] == 257
    assert after[2] is False  # the acked pointer only grows


def test_ack_churn_keeps_flash_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    out = mpy_journal(
        folder,
        "mx = 0\nfor i in range(1, 2001):\n    j.append({'kind': 'rating', 'level': 'basic'})\n"
        "    if i % 10 == 0:\n        j.ack(i - 5)\n"
        "    mx = max(mx, len(os.listdir(" + repr(str(folder)) + ")))\nout.append(mx)\n"
        "out.append(j.summary())",
    )
    max_files, summary = out
    assert max_files <= 3  # meta.json and at most two segments, whatever the number of presses
    assert summary["last_seq"] == 2000 and summary["acked"] == 1995  # type: ignore[index]


def test_ack_beyond_last_seq_is_refused(tmp_path: Path) -> None:
    out = mpy_journal(
        tmp_path / "j",
        "j.append({'kind': 'x'})\ntry:\n    j.ack(5)\nexcept OSError as e:\n"
        "    out.append(str(e))\nout.append(j.acked)",
    )
    assert "beyond last_seq" in str(out[0]) and out[1] == 0


def test_journal_of_another_device_is_refused(tmp_path: Path) -> None:
    mpy_journal(tmp_path / "j", "")
    with pytest.raises(AssertionError, match="belongs to device"):
        run_micropython(f"import journal\njournal.Journal({str(tmp_path / 'j')!r}, 'T02')\n")


def test_summary_of_a_missing_journal_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no MicroPython journal"):
        journal_summary(tmp_path / "nothing")


def test_a_cut_interrupted_by_a_power_cut_is_finished_at_open(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    mpy_journal(folder, "for i in range(3):\n    j.append({'kind': 'rating', 'n': i})")
    (seg,) = segments(folder)
    # FAT-style cut: the original removed, the power failed before the copy was renamed back
    seg.rename(seg.with_name(seg.name + ".tmp"))
    out = mpy_journal(folder, "out.append(j.last_seq); out.append(j.append({'kind': 'rating', 'n': 3}))")
    assert out == [3, 4]
    assert [p.name for p in segments(folder)] == [seg.name]
    assert not list(folder.glob("*.tmp"))
