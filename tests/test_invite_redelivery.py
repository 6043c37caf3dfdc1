"""An invitation that reaches a terminal again after its case was rated there (found by the chaos
run: while its disk was full the hub could not mark an invitation published and sent it every half
second; each copy lit the keys again, and the terminal took 59 more ratings of one case, each with
"thank you", each refused by the hub). Commands travel at QoS 1, so copies come also after a hub
killed between publishing and marking, or a reconnect: a terminal must never reopen a case it has
rated. Both terminals: the CPython terminal against a running hall, the firmware in MicroPython
(the rule itself is terminal.core's, tests/test_core_rules.py)."""

from __future__ import annotations

import json
from pathlib import Path

from simulators.hall import Hall, wait_for

from .invariant import assert_invariant
from .micro_harness import run_micropython
from .rig import HubApi, TerminalRig


def _publish_again(hall: Hall, case: str) -> None:
    """Make the running hub send the invitation of ``case`` again, as it does after a crash
    between publishing a command and recording it (or while it cannot record it)."""
    with hall.store() as store, store.transaction() as conn:
        conn.execute("UPDATE commands SET published_ms = NULL WHERE payload LIKE ?", (f'%"{case}"%',))


def test_a_terminal_never_reopens_a_case_it_has_rated(hall: Hall) -> None:
    hall.add_device("T01", "W01", mode="invited")
    hall.start_broker()
    hall.start_hub()
    api, rig = HubApi(hall), TerminalRig(hall, "T01")
    try:
        api.open_case("C-1", "W01")
        rig.wait_invited("C-1")
        rig.press("satisfied")
        _publish_again(hall, "C-1")
        wait_for(lambda: rig.term.uplink.counts["commands"] >= 2, 20, "the invitation's second copy")
        assert rig.term.evaluator.invitation is None and not rig.term.evaluator.ready
        rig.press("very_satisfied")  # a press after the copy: ignored, not a second rating of C-1
        rig.wait_acked()
        rows = [(r.body["kind"], r.body.get("case")) for r in rig.term.journal.rows_after(0, 9)]
    finally:
        rig.close()
        api.close()
    assert_invariant(hall, ["T01"])
    total = hall.stats(("window",))["total"]
    assert (total["evaluations"], total["refused"], total["ignored"]) == (1, 0, 1), (total, rows)


def test_the_firmware_never_reopens_a_case_it_has_rated(tmp_path: Path) -> None:
    script = f"""
import json, main

class Board:
    levels = ("satisfied", "basic")
    reasons = ()
    def show(self, feedback):
        self.shown = feedback
    def synced(self):
        return False
    network_up = log = synced

cfg = {{"hall": "H1", "device": "M01", "window": "W01", "mode": "invited", "key": "00" * 32,
        "journal": {str(tmp_path / "journal")!r}}}
board = Board()
fw = main.Firmware(cfg, board)
invite = {{"cmd": "invite", "case": "C-1", "ttl_ms": 60000}}
out = [fw._command(invite), fw.press(("level", "satisfied"))]
out += [fw._command(invite), fw.rules.invitation, board.shown, fw.press(("level", "basic"))]
fw._command({{"cmd": "invite", "case": "C-2", "ttl_ms": 60000}})  # the next case opens
out += [fw.rules.invitation[0], fw.press(("level", "basic"))]
print(json.dumps(out))
"""
    out = json.loads(run_micropython(script, heap="256k").strip().splitlines()[-1])
    assert out[:2] == [None, [1, "rating"]]
    assert out[2:6] == [None, None, "thanks", [2, "ignored"]], out  # the copy lit nothing again
    assert out[6:] == ["C-2", [3, "rating"]]
