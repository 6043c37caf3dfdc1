"""Layered configuration (SPEC section 13), without a broker: the settings' validation (the hub's and
the terminals' small form agree, under both interpreters), precedence of the layers, versions and
resends on the hub, the CLI's refusals, and the rules taking a configuration up only between
ratings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from haocha.cli import main
from hub import layers
from hub.pages.render_ops import devices_html
from hub.pages.terminals import terminals
from hub.store import now_ms
from protocol import commands
from protocol.errors import MalformedFrame
from protocol.settings import HUB_ONLY, VECTORS, SettingError, parse_value, setting_problem, settings_problem
from protocol.state import ConfigReport, State
from simulators.hall import Hall
from terminal import conf
from terminal.core import Rules
from terminal.hubconfig import HubConfigFile
from terminal.micro_host import find_micropython, firmware_source

try:
    from .micro_harness import run_micropython
except ImportError:
    from micro_harness import run_micropython  # type: ignore[no-redef]

TIMING = {"lockout_s": 10.0, "invite_s": 60.0, "reason_s": 20.0}


def rules() -> Rules:
    r = Rules("free", None, None, 10_000, 60_000, 20_000, 2_000)
    conf.keys(r, ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied"), ("cold", "lazy"), ())
    return r


def config(version: int, **settings: Any) -> dict[str, Any]:
    return {"cmd": "config", "version": version, "settings": settings}


# -- validation ---------------------------------------------------------------------------------
def test_a_bad_setting_is_one_line_naming_its_key() -> None:
    assert setting_problem("invite_s", 90) is None
    assert setting_problem("invite_s", -1) == "invite_s must be more than 0 to 604800 seconds, got -1"
    assert setting_problem("reasons", ["cold", "rude"]).startswith("reasons names unknown reasons rude")  # type: ignore[union-attr]
    assert setting_problem("layout", 4) == "layout must be 3 or 5 (level keys that count), got 4"
    assert setting_problem("volume", 3).startswith("unknown setting 'volume' (known: invite_s, lockout_s")  # type: ignore[union-attr]
    assert parse_value("reasons", "cold, lazy") == ["cold", "lazy"] and parse_value("reasons", "") == []
    assert parse_value("lockout_s", "0") == 0 and parse_value("opening", "08:30-12:00") == "08:30-12:00"
    with pytest.raises(SettingError, match=r"^opening must end after it starts"):
        parse_value("opening", "17:00-09:00")


@pytest.mark.parametrize("settings, at_fault", VECTORS, ids=[json.dumps(v[0]) for v in VECTORS])
def test_the_hub_and_the_terminals_small_form_agree(settings: Any, at_fault: str | None) -> None:
    problem = settings_problem(settings)
    assert (problem is None) == (at_fault is None) and (at_fault or "") in (problem or "")
    assert conf.handle(rules(), config(1, **settings)) == ((at_fault, None) if at_fault else (None, "config"))


@pytest.mark.parametrize("settings", HUB_ONLY, ids=json.dumps)
def test_what_only_the_hub_refuses_is_harmless_on_a_terminal(settings: dict[str, Any]) -> None:
    assert settings_problem(settings) is not None
    r = rules()
    assert conf.handle(r, config(1, **settings)) == (None, "config") and conf.update(r, TIMING) == 1
    conf.keys(r, ("satisfied",), ("cold", "lazy"), ("cold",))
    assert r.reasons == ["cold"] and r.lockout_ms == 10_000  # "rude" has no key; nothing else changes


def test_the_small_form_agrees_in_micropython(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_bytes(firmware_source("conf.py").read_bytes())
    (tmp_path / "vectors.json").write_text(json.dumps([s for s, _ in VECTORS]))
    script = f"""
import sys, json
sys.path.insert(0, {str(tmp_path)!r})
import conf
class R:
    conf = (0, {{}})
for s in json.load(open({str(tmp_path / "vectors.json")!r})):
    print(json.dumps(conf.handle(R(), {{"cmd": "config", "version": 1, "settings": s}})[0]))
"""
    out = subprocess.run(
        [find_micropython(), "-X", "heapsize=256k", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert [json.loads(line) for line in out.stdout.splitlines()] == [f for _, f in VECTORS], out.stderr


def test_the_firmware_takes_up_refuses_and_keeps_a_configuration(tmp_path: Path) -> None:
    """``conf.board`` as main.Firmware calls it, in MicroPython: in force and written to
    config.json; after a restart in force again without a write; a hostile one refused with a
    reason short enough for the hub to take the state."""
    out = run_micropython(
        f"""
import json, conf
from core import Rules
class Board:
    levels = ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied")
    reasons = ("cold", "lazy")
    def log(self, line): print(json.dumps(["log", line]))
class Up:
    file, next_state = {str(tmp_path / "config.json")!r}, 5
class Fw:
    def __init__(self, cfg):
        self.cfg, self.board, self.uplink = cfg, Board(), Up()
        self.rules = Rules("free", None, None, 10000, 60000, 20000, 2000)
fw = Fw({{"reasons": ["cold", "lazy"], "timing": {{"lockout_s": 10.0}}}})
fw.rules.pending = {{"cmd": "config", "version": 3, "settings": {{"layout": 3, "lockout_s": 0, "reasons": ["lazy"]}}}}
conf.board(fw)
print(json.dumps([fw.rules.levels, fw.rules.reasons, fw.rules.lockout_ms, fw.uplink.next_state]))
again = Fw(json.load(open(Up.file)))
again.rules.pending, again.uplink.next_state = again.cfg["conf"], 5
conf.board(again)
print(json.dumps([again.rules.conf[0], again.rules.levels, again.uplink.next_state]))
fw.rules.pending = {{"cmd": "config", "version": 4, "settings": {{"x" * 300: 1}}}}
conf.board(fw)
print(json.dumps(json.load(open(Up.file))["conf"]))
""",
        heap="256k",
    )  # sources compiled on the spot need room: the board runs precompiled modules
    lines = [json.loads(line) for line in out.splitlines()]
    three = ["satisfied", "basic", "dissatisfied"]
    assert lines[1] == [three, ["lazy"], 0, None]  # in force, the state due at once
    assert lines[3] == [3, three, 5]  # after a restart: in force again, config.json not written again
    kept = lines[-1]
    assert (kept["version"], kept["settings"]["layout"], kept["refused"]["version"]) == (3, 3, 4)
    assert kept["refused"]["reason"] == "x" * 40 + " is not valid"  # the hub takes states up to 200


def test_the_config_command_and_the_state_report_round_trip() -> None:
    cmd = commands.Config(3, {"invite_s": 90, "reasons": ["cold"]})
    assert commands.decode(commands.encode(cmd)) == cmd
    with pytest.raises(MalformedFrame, match="field 'settings': layout must be 3 or 5"):
        commands.parse(config(4, layout=7))
    with pytest.raises(MalformedFrame, match="field 'version'"):
        commands.parse(config(0))
    state = State(online=True, config=ConfigReport(3, 4, "layout must be 3 or 5"))
    assert State.decode(state.encode()) == state
    with pytest.raises(MalformedFrame, match="field 'config'"):
        State.decode(b'{"online": true, "config": {"version": -1}}')


# -- the rules ------------------------------------------------------------------------------------
def test_a_configuration_waits_for_the_rating_under_way() -> None:
    r = rules()
    r.lockout_until = 12_000  # a press at 2 s, locked out for 10 s
    assert r.invite("C1", None, None, 60_000, now=0)
    assert conf.handle(r, config(1, invite_s=90, lockout_s=0, layout=3, reasons=[])) == (None, "config")
    assert conf.update(r, TIMING) == 0 and r.lockout_ms == 10_000  # an invitation is live
    r.cancel("C1")
    assert conf.update(r, TIMING) == 1
    assert (r.invite_ms, r.lockout_ms, r.reason_ms) == (90_000, 0, 20_000)  # reason_s: terminal.toml's
    assert r.lockout_until == 2_000  # the lockout under way is the new length
    conf.keys(r, ("very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied"), ("cold",), ("cold",))
    assert r.levels == ["satisfied", "basic", "dissatisfied"] and r.reasons == []
    assert r.press("level", "very_satisfied", 1) is None  # not a key of the 3-key layout
    assert conf.handle(r, config(1, invite_s=5)) == (None, None)  # a copy: nothing changes
    assert conf.handle(r, config(2, invite_s=-5)) == ("invite_s", None) and r.pending is None
    assert conf.handle(r, config(2)) == (None, "config") and conf.update(r, TIMING) == 2
    assert (r.invite_ms, r.lockout_ms) == (60_000, 10_000)  # every key back to terminal.toml's


def test_the_terminal_keeps_what_it_applied_and_refused(tmp_path: Path) -> None:
    kept = HubConfigFile(tmp_path)
    assert kept.report == ConfigReport(0)
    kept.applied(2, {"layout": 3})
    kept.refuse(3, "invite_s must be more than 0")
    again = HubConfigFile(tmp_path)
    assert (again.version, again.settings, again.report) == (2, {"layout": 3}, ConfigReport(2, 3, kept.refused[1]))  # type: ignore[index]
    (tmp_path / "hub-config.json").write_text('{"version": 5, "settings": {"layout": 9}}')
    assert HubConfigFile(tmp_path).version == 0  # tampered with: terminal.toml alone


# -- the hub --------------------------------------------------------------------------------------
def queued(hall: Hall, device: str) -> list[dict[str, Any]]:
    with hall.store() as store:
        rows = store.conn.execute("SELECT payload FROM commands WHERE device = ? ORDER BY id", (device,)).fetchall()
    return [json.loads(p) for (p,) in rows if json.loads(p)["cmd"] == "config"]


def cli(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result


def test_layers_precedence_versions_and_resends(hall: Hall) -> None:
    hall.add_device("T01", "W01")
    hall.add_device("T02", "W01")
    hall.add_device("T03", "W02")
    home = ("--home", str(hall.home))
    cli("config", "set", "invite_s", "90", *home)
    cli("config", "set", "invite_s", "45", "--window", "W01", *home)
    cli("config", "set", "invite_s", "30", "--device", "T01", *home)
    cli("config", "set", "reasons", "cold,lazy", "--window", "W01", *home)
    assert [c["settings"] for c in queued(hall, "T01")] == [
        {"invite_s": 90}, {"invite_s": 45}, {"invite_s": 30}, {"invite_s": 30, "reasons": ["cold", "lazy"]},
    ]  # fmt: skip
    assert [c["version"] for c in queued(hall, "T01")] == [1, 2, 3, 4]
    assert [c["settings"] for c in queued(hall, "T03")] == [{"invite_s": 90}]  # W01's layer does not reach W02
    shown = json.loads(cli("config", "show", "--device", "T01", "--format", "json", *home).stdout)
    assert {r["key"]: (r["value"], r["layer"]) for r in shown} == {
        "invite_s": (30, "device T01"), "reasons": (["cold", "lazy"], "window W01"),
    }  # fmt: skip
    assert shown[0]["pushed"] == 4 and shown[0]["applied"] is None
    cli("config", "unset", "invite_s", "--device", "T01", *home)
    assert queued(hall, "T01")[-1] == config(5, invite_s=45, reasons=["cold", "lazy"])

    with hall.store() as store, store.transaction() as conn:
        # T01 reports version 3 long after 5 went out: 5 again; T02 refused its newest: not again
        conn.execute("UPDATE config_pushes SET pushed_ms = 0")
        assert layers.on_report(conn, "T01", ConfigReport(3), layers.RESEND_MS + 1) == 5
        assert layers.on_report(conn, "T01", ConfigReport(3), layers.RESEND_MS + 2) is None  # just sent
        assert layers.on_report(conn, "T02", ConfigReport(0, 3, "reasons: bad"), layers.RESEND_MS + 1) is None
        assert layers.on_report(conn, "T03", ConfigReport(1), layers.RESEND_MS + 1) is None
        status = layers.device_status(conn)
    assert layers.describe(status["T01"]) == "3, pending 5"
    assert layers.describe(status["T02"]) == "0, refused 3: reasons: bad"
    assert layers.describe(status["T03"]) == "1"
    with hall.store() as store:  # the console's devices page
        terms = terminals(store, now_ms())
    page = devices_html(terms, {}, hall.config.tz, now_ms())
    assert "3, 待生效 5" in page and "0, 拒收 3: reasons: bad" in page and [t.config for t in terms][2] == "1"
    audit = json.loads(cli("audit", "--format", "json", *home).stdout)["rows"]
    assert [(r["action"], r["target"]) for r in audit if r["action"].startswith("config.")][-2:] == [
        ("config.set", "window W01"), ("config.unset", "device T01"),
    ]  # fmt: skip


def test_a_layer_the_hub_can_tell_is_bad_is_refused_and_nothing_is_stored(hall: Hall) -> None:
    hall.add_device("T01", "W01")
    home = ("--home", str(hall.home))
    for args, message in [
        (("invite_s", "0"), "invite_s must be more than 0"),
        (("reasons", "cold,rude"), "reasons names unknown reasons rude"),
        (("volume", "3"), "unknown setting 'volume'"),
        (("layout", "3", "--window", "W01", "--device", "T01"), "not both"),
    ]:
        result = cli("config", "set", *args, *home, code=2)
        assert message in result.stderr and "Traceback" not in result.output
    assert "unknown window W09" in cli("config", "set", "layout", "3", "--window", "W09", *home, code=1).stderr
    assert "layout is not set at hall" in cli("config", "unset", "layout", *home, code=1).stderr
    with hall.store() as store:
        assert store.conn.execute("SELECT count(*) FROM config_layers").fetchone()[0] == 0
    assert queued(hall, "T01") == []
    assert json.loads(cli("config", "show", "--format", "json", *home).stdout) == []


def test_the_silent_alarm_reads_a_windows_own_opening_hours(hall: Hall) -> None:
    from hub.alerts.rules import OpeningHours, Silent

    hall.add_device("T01", "W01")
    hall.add_device("T02", "W02")
    with hall.store() as store:
        layers.set_layer(store, "opening", "00:00-24:00", window="W02")
        settings = hall.config.alerts
        hours = OpeningHours(
            type(settings)(opening="00:00-00:01", days="every"), _AlwaysOpen(), hall.config.tz
        )  # the hall is closed all day but a minute; W02 is open around the clock
        found = Silent(settings.silent, hours).evaluate(store.conn, _noon(hall))
    assert [f.subject for f in found] == ["T02"]


class _AlwaysOpen:
    def is_workday(self, day: object) -> bool:
        return True


def _noon(hall: Hall) -> int:
    import datetime as dt

    noon = dt.datetime.combine(dt.date.today() + dt.timedelta(days=1), dt.time(12), hall.config.tz)
    return int(noon.timestamp() * 1000)


# -- the CPython terminal -------------------------------------------------------------------------
def test_the_terminal_defers_a_configuration_past_the_invitation_and_keeps_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A terminal on mock pins (no broker): a configuration that arrives during an invitation waits
    for it to end; in force, it is in hub-config.json and the state's report; a bad one is refused
    with one warning and its reason, and the one in force stays, also after a restart."""
    from gpiozero.pins.mock import MockFactory

    from terminal.config import load
    from terminal.runner import Terminal

    from .test_terminal import FakeClock, write_config

    path = write_config(tmp_path, 'mode = "invited"')
    factory, clock = MockFactory(), FakeClock()
    try:
        term = Terminal(load(path), clock=clock, pin_factory=factory)
        term.start()
        term.commands.handle({"cmd": "invite", "case": "C-1", "ttl_ms": 60_000})
        term.commands.handle(config(2, invite_s=90, layout=3))
        term.evaluator.tick()
        assert term.evaluator.config_pending == 2 and term.uplink.config_report == ConfigReport(0)
        factory.pin(6).drive_low(), factory.pin(6).drive_high()  # the rating ends the invitation
        term.evaluator.tick()
        assert (term.evaluator.rules.invite_ms, term.uplink.config_report) == (90_000, ConfigReport(2))
        caplog.clear()
        term.commands.handle(config(3, invite_s=0))
        [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warning == (
            "refused configuration 3 from the hub: field 'settings': invite_s must be more than 0 to 604800 "
            "seconds, got 0"
        )
        assert term.uplink.config_report == ConfigReport(2, 3, warning.split(": ", 1)[1])
        term.close()
        factory.reset()
        again = Terminal(load(path), clock=clock, pin_factory=factory)
        again.start()
        assert again.evaluator.rules.invite_ms == 90_000
        assert again.uplink.config_report == ConfigReport(2, 3, warning.split(": ", 1)[1])
        last = again.journal.last_seq
        for pin in (5, 6):  # very_satisfied counts for nothing in the 3-key layout; satisfied (no invitation)
            factory.pin(pin).drive_low(), factory.pin(pin).drive_high()
        assert [(r.body["kind"], r.body["level"]) for r in again.journal.rows_after(last, 9)] == [
            ("ignored", "satisfied")
        ]
        again.close()
    finally:
        factory.reset()
