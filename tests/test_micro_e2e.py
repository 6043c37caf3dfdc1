"""The firmware in ``micropython -X heapsize=64k`` with the simulated board, against a real
Mosquitto and a stand-in hub (``micro_harness``): exactly once, kill -9 of the board, broker
killed and restarted. After each: the hub's stored count for the epoch equals the journal's
``last_seq`` and every (epoch, seq) is stored once (SPEC section 9)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from terminal.micro_host import (
    MicroSimError,
    SimBoardProcess,
    compile_firmware,
    journal_summary,
    run_sim,
    write_sim_config,
)

try:
    from .micro_harness import KEY_HEX, Broker, StandInHub, make_config, wait_for
except ImportError:
    from micro_harness import KEY_HEX, Broker, StandInHub, make_config, wait_for  # type: ignore[no-redef]

KEY = bytes.fromhex(KEY_HEX)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as b:
        yield b


@pytest.fixture
def hub(broker: Broker) -> Iterator[StandInHub]:
    with StandInHub("H1", broker.port, {"M01": KEY}, broker.ca) as h:
        yield h


def assert_invariant(hub: StandInHub, journal: Path) -> dict[str, Any]:
    summary = journal_summary(journal)
    assert summary["pending"] == 0
    seqs = hub.seqs("M01", summary["epoch"])
    assert seqs == list(range(1, summary["last_seq"] + 1))  # each (epoch, seq) stored, once (a dict key)
    assert hub.count("M01", summary["epoch"]) == summary["last_seq"]
    assert hub.rejected == 0
    return summary


def drained(journal: Path) -> bool:
    return journal_summary(journal)["pending"] == 0


def test_run_sim_presses_arrive_exactly_once(tmp_path: Path, broker: Broker, hub: StandInHub) -> None:
    config = make_config(tmp_path / "dev", broker.port, ca=broker.ca)
    summary = run_sim(config, presses=40, rate=200, seed=7, keep_lockout=False, timeout_s=60)
    assert_invariant(hub, config.journal_path)
    events = hub.events("M01", summary["epoch"])
    ratings = [e for e in events if e["kind"] == "rating"]
    reasons = [e for e in events if e["kind"] == "reason"]
    assert len(ratings) == 40
    assert {e["trigger"] for e in ratings} == {"free"}
    bad = [e for e in ratings if e["level"] in ("dissatisfied", "very_dissatisfied")]
    assert [r["ref"] for r in reasons] == [e["seq"] for e in bad]  # each bad rating got its reason
    assert all(e["window"] == "W01" and e["item"] == "ITEM-1" and e["age_ms"] is not None for e in ratings)
    # the same seed gives the same levels (weighted: most citizens are satisfied)
    again = run_sim(config, presses=40, rate=200, seed=7, timeout_s=60)
    later = hub.events("M01", again["epoch"])[summary["last_seq"] :]
    assert [e["level"] for e in later if e["kind"] == "rating"] == [e["level"] for e in ratings]


def test_run_sim_with_zero_presses_only_drains(tmp_path: Path, broker: Broker, hub: StandInHub) -> None:
    config = make_config(tmp_path / "dev", broker.port, ca=broker.ca)
    first = run_sim(config, presses=0, timeout_s=30)
    assert first["last_seq"] == 0 and first["pending"] == 0


def test_run_sim_fails_clearly_without_a_hub(tmp_path: Path, broker: Broker) -> None:
    config = make_config(tmp_path / "dev", broker.port, ca=broker.ca)
    with pytest.raises(MicroSimError, match="unacked"):
        run_sim(config, presses=2, rate=100, timeout_s=4)


def test_invited_mode_rates_only_during_an_invitation(tmp_path: Path, broker: Broker, hub: StandInHub) -> None:
    config = make_config(tmp_path / "dev", broker.port, mode="invited", ca=broker.ca)
    with SimBoardProcess(write_sim_config(config, tmp_path)) as board:
        board.start()
        assert board.lights == "idle"
        assert board.press("press satisfied") == (1, "ignored")  # no invitation: counted, not a rating
        wait_for(lambda: board.status()["connected"], 10, "the board's MQTT link")
        hub.invite("M01", "CASE-1", ttl_ms=60000, item="ITEM-9")
        board.wait_lights("ready", 10)
        assert board.press("press basic") == (2, "rating")
        assert board.press("press basic") == (3, "ignored")  # one rating per case
        wait_for(lambda: drained(config.journal_path), 20, "every event acked")
        assert board.quit() == 0
        assert not board.loop_errors
    summary = assert_invariant(hub, config.journal_path)
    events = hub.events("M01", summary["epoch"])
    assert [e["kind"] for e in events] == ["ignored", "rating", "ignored"]
    assert (events[1]["case"], events[1]["item"], events[1]["trigger"]) == ("CASE-1", "ITEM-9", "invite")


def test_kill_9_mid_burst_keeps_the_invariant(tmp_path: Path, broker: Broker, hub: StandInHub) -> None:
    config = make_config(tmp_path / "dev", broker.port, ca=broker.ca)
    sim_config = write_sim_config(config, tmp_path, keep_lockout=False)
    code = compile_firmware(tmp_path / "fw")
    committed = confirmed = 0
    for round_ in range(3):
        with SimBoardProcess(sim_config, code_dir=code) as board:
            board.start()
            assert board.started["last_seq"] >= committed  # nothing committed is lost
            for _ in range(400):
                board.send("press satisfied")
            for _ in range(100 + 50 * round_):
                confirmed = int(board.expect("commit ", 20).split()[1])
            board.kill()  # mid-burst: presses queued, frames in flight
        committed = journal_summary(config.journal_path)["last_seq"]
        assert committed >= confirmed  # every press the board confirmed survived the kill
    with SimBoardProcess(sim_config, code_dir=code) as board:
        board.start()
        assert board.started["last_seq"] == committed
        wait_for(lambda: drained(config.journal_path), 30, "the backlog acked after the restarts")
        assert board.quit() == 0
        assert not board.loop_errors
    summary = assert_invariant(hub, config.journal_path)
    assert summary["last_seq"] == committed


def test_broker_killed_and_restarted_loses_nothing(tmp_path: Path, broker: Broker, hub: StandInHub) -> None:
    config = make_config(tmp_path / "dev", broker.port, ca=broker.ca)
    with SimBoardProcess(write_sim_config(config, tmp_path, keep_lockout=False)) as board:
        board.start()
        for _ in range(150):
            board.send("press basic")
        for _ in range(50):
            board.expect("commit ", 20)
        broker.kill()  # no persistence: whatever it had PUBACKed and queued is gone
        for _ in range(100):
            board.expect("commit ", 20)
        for _ in range(100):  # pressed while the broker is away: journaled, resent later
            assert board.press("press very_satisfied")[1] == "rating"
        replacement = Broker(broker.folder, port=broker.port).start()
        try:
            wait_for(lambda: drained(config.journal_path), 60, "every event acked after the broker came back")
            assert board.quit() == 0
            assert not board.loop_errors
        finally:
            replacement.stop()
    summary = assert_invariant(hub, config.journal_path)
    assert summary["last_seq"] == 250


def test_sim_board_processes_do_not_share_state(tmp_path: Path, broker: Broker) -> None:
    keys = {"M01": KEY, "M02": KEY}
    with StandInHub("H1", broker.port, keys, broker.ca) as hub:
        configs = [make_config(tmp_path / d, broker.port, device=d, ca=broker.ca) for d in ("M01", "M02")]
        results: dict[str, dict[str, Any]] = {}

        def one(cfg: Any) -> None:
            results[cfg.device] = run_sim(cfg, presses=20, rate=100, seed=1, timeout_s=60)

        threads = [threading.Thread(target=one, args=(c,)) for c in configs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        for device, summary in results.items():
            assert hub.count(device, summary["epoch"]) == summary["last_seq"] > 0
        assert len(results) == 2


def test_wifi_loss_journals_presses_and_sends_them_later(tmp_path: Path, broker: Broker, hub: StandInHub) -> None:
    config = make_config(tmp_path / "dev", broker.port, ca=broker.ca)
    with SimBoardProcess(write_sim_config(config, tmp_path, keep_lockout=False)) as board:
        board.start()
        wait_for(lambda: board.status()["connected"], 10, "the board's MQTT link")
        board.send("net down")
        seqs = [board.press("press satisfied")[0] for _ in range(20)]
        assert seqs == list(range(1, 21))  # committed while offline: the press never waits for the network
        assert board.status()["pending"] == 20
        board.send("net up")
        wait_for(lambda: drained(config.journal_path), 30, "the offline presses acked")
        assert board.quit() == 0
        assert not board.loop_errors
    assert_invariant(hub, config.journal_path)
