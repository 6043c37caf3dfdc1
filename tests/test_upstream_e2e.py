"""Upstream end to end: real broker, real hub process, real terminal programs, the regional
simulator on loopback failing half its calls, then down, then back, with kill -9 of the hub while
it sends. Every rating arrives exactly once (resends carry the same id), in order per window."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner

from haocha.cli import main
from hub.stats import stats
from hub.upstream import outbox
from simulators.hall import Hall, wait_for
from simulators.regional import RegionalSim

from .upstream_helpers import FAST


def _pending(hall: Hall) -> int:
    with hall.store() as store:
        return outbox.counts(store.conn)["pending"]


def _queued(hall: Hall) -> dict[str, list[str]]:
    """Evaluation record ids per window in the hub's commit order (the order they must arrive in)."""
    with hall.store() as store:
        rows = store.conn.execute("SELECT lane, record_id FROM outbox WHERE kind = 'evaluation' ORDER BY id")
        out: dict[str, list[str]] = {}
        for window, rid in rows:
            out.setdefault(window, []).append(rid)
    with hall.store() as store:
        stored = store.conn.execute("SELECT count(*) FROM events WHERE kind = 'rating' AND status != 'refused'")
        assert stored.fetchone()[0] == sum(len(r) for r in out.values())
    return out


def test_flaky_down_and_back_with_kill_9_of_the_hub_mid_send(tmp_path: Path) -> None:
    sim = RegionalSim(fail_rate=0.5, seed=11).start()
    sim.state.control["slow_s"] = 0.005
    with Hall(tmp_path / "hall", upstream={**FAST, "url": sim.url, "batch_size": 5}) as hall:
        for device, window in (("T01", "W01"), ("T02", "W02")):
            hall.add_device(device, window)
        hall.start_broker()
        hall.start_hub()
        hall.sim_terminal("T01", 300, 200, 1)
        hall.sim_terminal("T02", 300, 200, 2)
        for target in (60, 200):
            wait_for(lambda t=target: sim.state.summary()["records"] >= t, 60, f"{target} records upstream")
            hall.kill("hub")  # SIGKILL, in the middle of a batch
            hall.start_hub()
        sim.stop()  # down for a long stretch
        for device in ("T01", "T02"):
            assert hall.procs[f"sim-{device}"].wait(timeout=120) == 0, hall.log(f"sim-{device}")
        wait_for(lambda: "Connection refused" in hall.log("hub"), 30, "the hub to hit the dead link")
        assert _pending(hall) > 0
        sim.start()
        home = ["--home", str(hall.home)]
        assert CliRunner().invoke(main, ["upstream", "push-totals", "--period", "month", *home]).exit_code == 0
        wait_for(lambda: _pending(hall) == 0, 90, "the outbox to drain once the regional system is back")
        queued = _queued(hall)
        summary = sim.state.summary()
        assert summary["records"] == sum(len(r) for r in queued.values()) == 600
        assert summary["conflicts"] == 0 and summary["rejected"] == 0
        assert summary["failed"] > 0
        arrived = sim.state.in_order()
        for window, ids in queued.items():
            assert [r["recordId"] for r in arrived if r["windowNo"] == window] == ids, window
        codes = hall.config.upstream.reason_codes
        with hall.store() as store:
            reasons = {
                f"H1-{d}-{e}-{ref}": ",".join(codes[x] for x in json.loads(r))
                for d, e, ref, r in store.conn.execute(
                    "SELECT device, epoch, ref, reasons FROM events WHERE kind = 'reason'"
                )
            }
        bad = [r for r in arrived if r["satisfaction"] <= 2]
        assert bad and all(r["evalDetail"] == reasons.get(r["recordId"], "") for r in bad)  # late reasons arrived too
        today = dt.datetime.now(hall.config.tz).date()
        with hall.store() as store:
            rows = stats(store, ["window", "item"], today.replace(day=1), today, hall.config.satisfaction_threshold)
        sent = {(t["windowNo"], t["taskCode"]): t for t in sim.state.totals.values()}
        for row in rows["rows"]:
            t = sent[(row["window"], row["item"])]
            assert (t["evaluations"], t["badRate"], t["levels"]["1"]) == (
                row["evaluations"],
                row["bad_rate"],
                row["levels"]["very_dissatisfied"],
            )
    sim.stop()
