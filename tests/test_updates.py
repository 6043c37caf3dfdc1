"""Signed releases and two-slot updates (SPEC section 13), without a broker: the pure-Python
ed25519 check against ``cryptography``, the launcher's revert of a trial boot that never
confirmed, the updater refusing what it must refuse (nothing switched), waiting for a rating to
end, and the hub's build, rollout, phases and the ``/fleet/releases/`` path check."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from hub import certs, release_key, releases
from hub.config import load as load_hub_config
from hub.http.fleet import fleet_routes
from hub.store import Store
from hub.store import registry as reg
from protocol import commands
from protocol.errors import MalformedFrame
from protocol.levels import DEFAULT_REASONS
from protocol.terminal_config import load as load_terminal_config
from protocol.updates import Manifest, ReleaseFile, ReleaseKind, UpdatePhase, board_signature
from simulators.hall import Hall, wait_for
from terminal import __version__, ed25519
from terminal.panel import Key, KeyKind
from terminal.slots import Slots
from terminal.updater import Updater

from .rig import HubApi, TerminalRig

# -- ed25519 ---------------------------------------------------------------------------------


def test_pure_python_ed25519_agrees_with_cryptography() -> None:
    for n in range(8):
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes_raw()
        message = os.urandom(n * 37)
        sig = key.sign(message)
        assert ed25519.verify(public, message, sig)
        assert not ed25519.verify(public, message + b"x", sig)
        assert not ed25519.verify(public, message, sig[:-1] + bytes([sig[-1] ^ 1]))
        assert not ed25519.verify(Ed25519PrivateKey.generate().public_key().public_bytes_raw(), message, sig)
    assert not ed25519.verify(b"\x00" * 31, b"", b"\x00" * 64)  # malformed: not valid, never raises
    # RFC 8032, section 7.1, test 1
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f"
        "0595bbe24655141438e7a100b"
    )
    assert ed25519.verify(public, b"", sig)


# -- slots and the launcher -------------------------------------------------------------------


def make_slots(root: Path) -> Slots:
    """Two slots whose ``bin/haocha`` is a script that records which slot ran."""
    for name in ("a", "b"):
        program = root / "slots" / name / "bin" / "haocha"
        program.parent.mkdir(parents=True)
        program.write_text(f'#!/bin/sh\necho {name} "$@" >> "{root}/ran"\n')
        program.chmod(0o755)
    os.symlink("a", root / "slots" / "current")
    return Slots(root)


def launch(root: Path) -> str:
    """What systemd does: run the launcher (the system's python3, outside the slots)."""
    launcher = Path(__file__).resolve().parent.parent / "terminal" / "slots.py"
    done = subprocess.run(["python3", str(launcher), "--root", str(root), "--", "terminal", "run"], timeout=30)
    assert done.returncode == 0
    return (root / "ran").read_text().splitlines()[-1]


def test_a_trial_boot_that_ends_without_confirming_is_reverted_by_the_launcher(tmp_path: Path) -> None:
    slots = make_slots(tmp_path)
    assert launch(tmp_path) == "a terminal run"
    slots.switch("b", "0.2.0", "0.1.0")
    assert launch(tmp_path) == "b terminal run"  # the trial boot
    # killed, crashed or hung before its self-test confirmed: the next start is the old slot
    assert launch(tmp_path) == "a terminal run"
    assert slots.current() == "a" and slots.trial() is None
    assert slots.boot()["last"]["phase"] == "rolled_back" and slots.boot()["release"] == "0.1.0"
    slots.switch("b", "0.2.0", "0.1.0")
    assert launch(tmp_path) == "b terminal run"
    slots.confirm()
    assert launch(tmp_path) == "b terminal run" and launch(tmp_path) == "b terminal run"  # it stays
    assert slots.boot()["last"] == {"release": "0.2.0", "phase": "confirmed", "detail": ""}


# -- the updater ------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP, as the hub serves /fleet/releases/R/."""
    yield from _serve(tmp_path, None)


def _serve(tmp_path: Path, tls: ssl.SSLContext | None) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "www" / "fleet" / "releases"
    folder.mkdir(parents=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path / "www")))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "http" if tls is None else "https"
    yield folder, f"{scheme}://127.0.0.1:{server.server_address[1]}/fleet/releases/"
    server.shutdown()


def _hall_ca(folder: Path, hall: str) -> tuple[Path, ssl.SSLContext]:
    """A hall CA's certificate, and a server context with a certificate it signed for 127.0.0.1."""
    ca_key, ca_cert = certs.make_ca(hall)
    key, cert = certs.issue(ca_key, ca_cert, "hub API", 30, ["127.0.0.1"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(certs.cert_pem(ca_cert))
    (folder / "http.key").write_bytes(certs.key_pem(key))
    (folder / "http.crt").write_bytes(certs.cert_pem(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "http.crt", folder / "http.key")
    return folder / "ca.crt", context


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class FakeTerminal:
    """What the updater needs of a terminal: a rating that may be under way, a state it reports."""

    def __init__(self, tmp_path: Path, key: Ed25519PrivateKey, ca: Path | None = None) -> None:
        folder = tmp_path / "term"
        folder.mkdir()
        if ca is not None:
            shutil.copy2(ca, folder / "ca.crt")
        (folder / "terminal.toml").write_text(
            'hall = "H1"\ndevice = "T01"\nwindow = "W01"\nkey = "'
            + "00" * 32
            + '"\n[broker]\nhost = "127.0.0.1"\nport = 1\n'
            f'user = "T01"\npassword = "p"\nca = "{"" if ca is None else "ca.crt"}"\n'
        )
        (folder / "release.pub").write_text(key.public_key().public_bytes_raw().hex() + "\n")
        self.config = load_terminal_config(folder / "terminal.toml")
        self.busy = False
        self.resumed = threading.Event()
        self.restarted = threading.Event()
        self.installed: list[Path] = []
        self.slots = make_slots(tmp_path)
        self.updater = self.new_process()

    def new_process(self) -> Updater:
        """The updater of a program started on these slots (after a restart)."""
        return Updater(
            self.config,
            lambda: not self.busy,
            list,
            lambda: None,
            self.restarted.set,
            self.slots,
            self._install,
            resume=self.resumed.set,
        )

    def _install(self, target: Path, wheel: Path, url: str) -> None:
        assert wheel.read_bytes() == f"wheel of {wheel.name.split('-')[1]}".encode()
        self.installed.append(target)

    def phase(self) -> str | None:
        state = self.updater.state
        return None if state is None else state.phase.value


def release_command(folder: Path, url: str, key: Ed25519PrivateKey, release: str = "9.9.9") -> commands.Update:
    wheel = f"haocha-{release}-py3-none-any.whl"
    data = f"wheel of {release}".encode()
    (folder / release).mkdir(exist_ok=True)
    (folder / release / wheel).write_bytes(data)
    manifest = Manifest(release, ReleaseKind.TERMINAL, (releases._entry(folder / release / wheel),)).encode()
    return commands.Update(release, manifest.decode(), key.sign(manifest).hex(), f"{url}{release}/")


def test_the_updater_installs_beside_switches_and_restarts_only_after_the_rating(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    key = Ed25519PrivateKey.generate()
    term = FakeTerminal(tmp_path, key)
    term.busy = True  # an invitation or a reason wait is live
    term.updater.handle(release_command(*served, key))
    wait_for(lambda: term.phase() == "verified", 10, "the release to be checked and installed")
    assert term.installed == [tmp_path / "slots" / "b"]
    assert not term.restarted.wait(0.5) and term.slots.current() == "a"  # never in the middle of a rating
    term.busy = False
    assert term.restarted.wait(10)
    assert term.slots.current() == "b" and term.slots.trial() == {
        "slot": "b", "release": "9.9.9", "from": "a", "from_release": __version__, "boots": 0,
    }  # fmt: skip


def test_a_switch_that_fails_reports_failed_and_gives_the_keys_back(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Ed25519PrivateKey.generate()
    term = FakeTerminal(tmp_path, key)

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(term.slots, "switch", disk_full)
    term.updater.handle(release_command(*served, key))
    wait_for(lambda: term.phase() == "failed", 10, "the failed switch")
    assert term.resumed.is_set() and not term.restarted.is_set()
    assert term.slots.current() == "a"  # this release runs on
    assert term.updater.state is not None and "No space left" in term.updater.state.detail


def test_a_release_announced_during_an_update_is_taken_up_after_the_switch(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    key = Ed25519PrivateKey.generate()
    term = FakeTerminal(tmp_path, key)
    term.busy = True
    term.updater.handle(release_command(*served, key))
    wait_for(lambda: term.phase() == "verified", 10, "the first release to be installed")
    newer = release_command(*served, key, "9.9.10")
    term.updater.handle(newer)  # queued: one update at a time
    term.busy = False
    assert term.restarted.wait(10) and term.slots.current() == "b"
    assert term.installed == [tmp_path / "slots" / "b"]  # slot a, the way back, stays as it was
    assert term.slots.pending() == commands.payload(newer)
    term.slots.confirm()  # the new release passed its self-test (here: by hand)
    again = term.new_process()
    again.start()  # takes the newer release up, into slot a
    wait_for(lambda: again.state is not None and again.state.release == "9.9.10", 10, "the newer release")
    wait_for(lambda: len(term.installed) == 2, 10, "its install")
    assert term.installed[1] == tmp_path / "slots" / "a"


@pytest.mark.parametrize("trusted", [True, False])
def test_the_updater_fetches_over_https_trusting_the_hall_ca(tmp_path: Path, trusted: bool) -> None:
    key = Ed25519PrivateKey.generate()
    ca, server_tls = _hall_ca(tmp_path / "hall", "H1")
    other_ca, _ = _hall_ca(tmp_path / "other", "H2")
    term = FakeTerminal(tmp_path, key, ca if trusted else other_ca)
    serving = _serve(tmp_path, server_tls)
    folder, url = next(serving)
    try:
        term.updater.handle(release_command(folder, url, key))
        wait_for(lambda: term.phase() in ("verified", "failed"), 10, "the download over HTTPS")
    finally:
        next(serving, None)
    if trusted:
        assert term.phase() == "verified" and term.installed == [tmp_path / "slots" / "b"]
    else:  # a hub whose certificate the hall CA did not sign
        assert term.phase() == "failed" and term.installed == [] and term.slots.current() == "a"
        assert term.updater.state is not None and "CERTIFICATE_VERIFY_FAILED" in term.updater.state.detail


@pytest.mark.parametrize("fault", ["tampered file", "bad signature", "another release's manifest", "other key"])
def test_a_release_that_fails_its_checks_is_refused_and_nothing_switches(
    tmp_path: Path, served: tuple[Path, str], fault: str
) -> None:
    key = Ed25519PrivateKey.generate()
    term = FakeTerminal(tmp_path, key)
    folder, url = served
    update = release_command(folder, url, key)
    if fault == "tampered file":
        (folder / "9.9.9" / "haocha-9.9.9-py3-none-any.whl").write_bytes(b"wheel of 6.6.6")
    elif fault == "bad signature":
        update = commands.Update(update.release, update.manifest, "0" * 128, update.url)
    elif fault == "other key":
        update = commands.Update(update.release, update.manifest, Ed25519PrivateKey.generate().sign(
            update.manifest.encode()).hex(), update.url)  # fmt: skip
    else:  # a manifest validly signed, for another release, sent as this one
        other = release_command(folder, url, key, "8.8.8")
        update = commands.Update("9.9.9", other.manifest, other.sig, update.url)
        with pytest.raises(MalformedFrame, match="names another release"):
            commands.parse(commands.payload(update))  # the router's parser refuses it; the updater too:
    term.updater.handle(update)
    wait_for(lambda: term.phase() == "failed", 10, "the refusal")
    assert term.updater.state is not None
    assert term.installed == [] and term.slots.current() == "a" and term.slots.trial() is None
    assert not term.restarted.is_set()
    assert term.slots.boot()["last"]["phase"] == "failed"  # still said after a restart


# -- the hub ----------------------------------------------------------------------------------


def fake_wheel(folder: Path, version: str, says: str | None = None) -> Path:
    """A wheel as ``release build`` reads it: its name and the version the terminal reports."""
    wheel = folder / f"haocha-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("terminal/__init__.py", f'__version__ = "{says or version}"\n')
    return wheel


@pytest.fixture
def hub_home(tmp_path: Path) -> Path:
    hall = Hall(tmp_path / "hub")
    for device, window in (("T01", "W01"), ("T02", "W02"), ("T03", "W02"), ("T04", "W03")):
        hall.add_device(device, window)
    hall.add_device("M01", "W09", kind="micro")
    return hall.home


def test_release_build_rollout_phases_and_pause(hub_home: Path, tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path, "7.0.1")
    config = load_hub_config(hub_home)
    pub = release_key.public_hex(hub_home)
    assert (hub_home / "devices" / "T01" / "release.pub").read_text().strip() == pub  # device add put it there
    assert oct((hub_home / release_key.KEY_FILE).stat().st_mode & 0o777) == "0o600"
    with Store(hub_home / "hub.db") as store:
        manifest = releases.build(store, hub_home, ReleaseKind.TERMINAL, wheel=wheel)
        assert manifest.files == (ReleaseFile(wheel.name, releases._entry(wheel).sha256, wheel.stat().st_size),)
        folder = hub_home / "releases" / "7.0.1"
        sig = (folder / "manifest.sig").read_text().strip()
        assert ed25519.verify(bytes.fromhex(pub), (folder / "manifest.json").read_bytes(), bytes.fromhex(sig))
        with pytest.raises(releases.ReleaseError, match="exists already"):
            releases.build(store, hub_home, ReleaseKind.TERMINAL, wheel=wheel)

        assert releases.rollout(store, config, "7.0.1", releases.Scope(devices=("T01",))) == ["T01"]
        assert releases.rollout(store, config, "7.0.1", releases.Scope(window="W02")) == ["T02", "T03"]
        assert releases.rollout(store, config, "7.0.1", releases.Scope(share=50)) in ([], ["T04"])
        queued = [json.loads(p) for (p,) in store.conn.execute("SELECT payload FROM commands ORDER BY id")]
        assert [q["cmd"] for q in queued] == ["update"] * len(queued)
        assert queued[0]["sig"] == sig and queued[0]["url"].endswith("/fleet/releases/7.0.1/")

        with store.transaction() as conn:
            releases.record_update(conn, "T02", {"release": "7.0.1", "phase": "rolled_back", "detail": "x"}, 5)
            releases.record_update(conn, "T01", {"release": "7.0.1", "phase": "confirmed", "detail": ""}, 6)
        phases = {r["device"]: r["phase"] for r in releases.status(store, "7.0.1")}
        assert phases == {"T01": "confirmed", "T02": "rolled_back", "T03": "announced"} | (
            {"T04": "announced"} if "T04" in phases else {}
        )
        with pytest.raises(releases.ReleaseError, match="paused: T02 rolled back: x"):
            releases.rollout(store, config, "7.0.1", releases.Scope(everyone=True))
        widened = releases.rollout(store, config, "7.0.1", releases.Scope(everyone=True), force=True)
        assert "M01" not in widened and set(widened) <= {"T04"}  # a board never gets a terminal release

        firmware = releases.build(store, hub_home, ReleaseKind.MICRO, "micro-1.0")
        names = {f.name for f in firmware.files}
        assert "core.py" in names and "conf.py" in names and "sim_board.py" not in names and "config.json" not in names
        assert releases.rollout(store, config, "micro-1.0", releases.Scope(everyone=True)) == ["M01"]
        payload = json.loads(store.conn.execute("SELECT payload FROM commands ORDER BY id DESC").fetchone()[0])
        served = (hub_home / "releases" / "micro-1.0" / "manifest.json").read_bytes()  # by reference: the text signed
        assert "manifest" not in payload and served == firmware.encode()
        assert payload["sig"] == board_signature(reg.get_device(store, "M01").mac_key, served)
        assert releases.served_file(hub_home, "micro-1.0", "manifest.json") is not None
        actions = [a for (a,) in store.conn.execute("SELECT action FROM audit WHERE action LIKE 'release.%'")]
        assert actions.count("release.rollout") == 5 and actions.count("release.build") == 2


def test_fleet_serves_a_release_s_listed_files_only(hub_home: Path, tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path, "7.0.2")
    with Store(hub_home / "hub.db") as store:
        releases.build(store, hub_home, ReleaseKind.TERMINAL, wheel=wheel)
    (hub_home / "releases" / "7.0.2" / "notes.txt").write_text("not in the manifest")
    from starlette.applications import Starlette

    client = TestClient(Starlette(routes=fleet_routes(hub_home)))
    base = "/fleet/releases/7.0.2/"
    assert client.get(base + wheel.name).content == wheel.read_bytes()
    assert client.get(base + "manifest.json").status_code == 200
    for path in (base + "notes.txt", base + "..%2F..%2Fhub.toml", "/fleet/releases/..%2F/hub.db", base + "x"):
        assert client.get(path).status_code == 404, path


def test_release_cli(hub_home: Path, tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path, "7.0.3")

    def haocha(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "haocha", *args, "--home", str(hub_home)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert haocha("release", "build", "--wheel", str(wheel)).stdout.strip() == "7.0.3"
    (tmp_path / "x").mkdir()
    liar = haocha("release", "build", "--wheel", str(fake_wheel(tmp_path / "x", "7.0.4", says="0.1.0")))
    assert liar.returncode == 1 and liar.stderr.strip() == (
        "Error: haocha-7.0.4-py3-none-any.whl: its terminal/__init__.py says 0.1.0, not 7.0.4: set both versions"
    )
    assert haocha("release", "build").stdout.strip() == __version__  # the wheel of this source tree
    assert (
        haocha("release", "rollout", "7.0.3")
        .stderr.strip()
        .endswith("name exactly one of --device, --window, --share, --all")
    )
    assert haocha("release", "rollout", "7.0.3", "--device", "T04").returncode == 0
    bad = haocha("release", "rollout", "7.0.3", "--device", "M01")
    assert (
        bad.returncode == 1 and bad.stderr.strip() == "Error: 'M01' is no active terminal device (haocha device list)"
    )
    rows = json.loads(haocha("release", "status", "--format", "json").stdout)
    assert [(r["device"], r["phase"]) for r in rows] == [("T04", "announced")]
    listed = json.loads(haocha("release", "list", "--format", "json").stdout)
    assert listed[0]["release"] == "7.0.3" and listed[0]["announced"] == 1
    devices = {d["device"]: d for d in json.loads(haocha("device", "list", "--format", "json").stdout)}
    assert devices["T04"]["update"] == "7.0.3 announced"
    assert haocha("release", "key").stdout.strip() == release_key.public_hex(hub_home)
    assert UpdatePhase.CONFIRMED.value == "confirmed"


def test_an_update_arriving_during_an_invitation_switches_only_after_the_rating(
    running_hall: Hall, tmp_path: Path
) -> None:
    """Through the real hub and broker, into a real terminal (its slots and pip stand-in set on
    its updater): the update waits for the invitation, then the reason wait, to end."""
    hall = running_hall
    hall.add_device("T01", "W01", mode="invited")
    wheel = fake_wheel(tmp_path, "7.0.5")
    folder = tmp_path / "T01"  # the terminal's copy of its folder, with two reason keys wired
    shutil.copytree(hall.terminal_config("T01").parent, folder)
    settings = tomllib.loads((folder / "terminal.toml").read_text())
    reasons = settings.get("reasons", DEFAULT_REASONS)[:2]
    settings.setdefault("gpio", {})["reason_keys"] = dict(zip(reasons, (22, 27), strict=True))
    (folder / "terminal.toml").write_text(tomli_w.dumps(settings))
    api, rig = HubApi(hall), TerminalRig(hall, "T01", folder / "terminal.toml")
    installed: list[Path] = []
    updater = rig.term.updater
    updater.slots, updater.install = make_slots(tmp_path / "opt"), lambda target, w, url: installed.append(target)
    try:
        api.open_case("C-1", "W01")
        rig.wait_invited("C-1")
        with hall.store() as store:
            releases.build(store, hall.home, ReleaseKind.TERMINAL, wheel=wheel)
            releases.rollout(store, hall.config, "7.0.5", releases.Scope(devices=("T01",)))
        wait_for(lambda: _hub_phase(hall, "T01") == "verified", 20, "the hub to hear the release was checked")
        assert installed and not rig.term.restarting.is_set() and updater.slots.current() == "a"
        before = rig.term.journal.last_seq
        rig.press("very_dissatisfied")  # the invitation ends; a reason wait begins
        assert rig.term.evaluator.rules.awaiting_reason is not None and not rig.term.restarting.is_set()
        reason = sorted(rig.term.panel.reasons & set(rig.config.reasons))[0]
        rig.sim.press(Key(KeyKind.REASON, reason))
        wait_for(rig.term.restarting.is_set, 10, "the switch once the rating is whole")
        counts = rig.term.evaluator.counts
        assert (counts["ratings"], counts["reasons"], rig.term.journal.last_seq) == (1, 1, before + 2)
        assert updater.slots.current() == "b"
        assert rig.term.press(Key(KeyKind.LEVEL, "satisfied")) is None  # no key is taken any more
        rig.wait_acked()
    finally:
        rig.close()
        api.close()


def _hub_phase(hall: Hall, device: str) -> str | None:
    with hall.store() as store:
        rows = releases.status(store)
    return next((r["phase"] for r in rows if r["device"] == device), None)
