"""MQTT over TLS by default (SPEC section 11): the hall CA `hub init` makes, a broker that speaks
only TLS, every kind of terminal verifying it, per-device client certificates, renewal, HTTPS for
the hub's API and an https:// upstream with a CA bundle of its own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hub import certs
from hub.tlsfiles import RenewalWatch
from hub.upstream import outbox
from hub.upstream.sender import Sender
from protocol.transport import client_tls
from simulators.hall import Hall, port_open, wait_for
from simulators.regional import RegionalSim
from terminal.micro_host import compile_firmware

from .invariant import assert_invariant
from .micro_harness import Broker, board_on, logged, own_ca
from .rig import TerminalRig
from .upstream_helpers import ingest, make_home, rating

REPO = Path(__file__).resolve().parent.parent
KINDS = ("gpio", "modbus", "serial", "micro")


def haocha(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haocha", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def broker_serial(hall: Hall, port: int | None = None) -> int:
    """The serial number of the certificate the running broker (or the server at ``port`` on this
    machine) shows a new connection."""
    with (
        socket.create_connection(("127.0.0.1", port or hall.broker_port), timeout=5) as raw,
        hall.tls_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def mqtt_login(hall: Hall, user: str, password: str, tls: ssl.SSLContext | None) -> str:
    """One MQTT 3.1.1 login: the CONNACK's reason, or why there was none."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    client.username_pw_set(user, password)
    if tls is not None:
        client.tls_set_context(tls)
    reasons: list[str] = []
    client.on_connect = lambda c, u, flags, reason, props: reasons.append(str(reason))
    try:
        client.connect("127.0.0.1", hall.broker_port)
        for _ in range(40):
            if reasons or client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.disconnect()
    return reasons[0] if reasons else "no CONNACK"


# -- hub init, device add -------------------------------------------------------------------------


def test_hub_init_makes_the_hall_ca_and_device_add_puts_it_beside_every_terminal(tmp_path: Path) -> None:
    home = tmp_path / "hall"
    assert haocha("hub", "init", "--home", str(home), "--hall", "H1", "--broker", "192.0.2.10:8883").returncode == 0
    p = certs.paths(home)
    for key in (p.ca_key, p.key("broker"), p.key("http"), p.key("hub")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    ca = certs.load_cert(p.ca_cert)
    broker = certs.load_cert(p.cert("broker"))
    broker.verify_directly_issued_by(ca)
    assert {"192.0.2.10", "127.0.0.1", "localhost"} <= set(certs.names_of(broker))
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650
    assert haocha("window", "add", "W01", "--name", "一号窗", "--home", str(home)).returncode == 0
    for device, kind in (("T01", "gpio"), ("M01", "micro")):
        assert haocha("device", "add", device, "--window", "W01", "--kind", kind, "--home", str(home)).returncode == 0
        folder = home / "devices" / device
        settings = tomllib.loads((folder / "terminal.toml").read_text())
        assert settings["broker"]["ca"] == "ca.crt"  # the contract key, relative to the file
        assert (folder / "ca.crt").read_bytes() == p.ca_cert.read_bytes()
    board = home / "devices" / "M01" / "board"
    assert json.loads((board / "config.json").read_text())["broker"]["tls"] == ["ca.der"]
    assert x509.load_der_x509_certificate((board / "ca.der").read_bytes()) == ca


def test_a_hall_made_before_tls_says_what_to_run_and_tls_init_brings_it_and_its_terminals_over(
    tmp_path: Path,
) -> None:
    hall = Hall(tmp_path / "hall")
    hall.add_device("T01", "W01")
    shutil.rmtree(certs.paths(hall.home).folder)  # as a hall made before this change
    settings = tomllib.loads(hall.terminal_config("T01").read_text())
    del settings["broker"]["ca"]
    (hall.terminal_config("T01").parent / "ca.crt").unlink()
    hall.terminal_config("T01").write_text(tomli_w.dumps(settings))
    for command in (("broker", "run"), ("hub", "run")):
        result = haocha(*command, "--home", str(hall.home), timeout=30)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert f"run `haocha tls init --home {hall.home}`" in lines[0]
    assert haocha("tls", "init", "--home", str(hall.home)).returncode == 0
    settings = tomllib.loads(hall.terminal_config("T01").read_text())
    assert settings["broker"]["ca"] == "ca.crt"
    assert settings["key"] and settings["broker"]["password"]  # the secrets stay as they were
    try:
        hall.start_broker()
        hall.start_hub()
        assert hall.sim_terminal("T01", 5).wait(60) == 0
        assert_invariant(hall, ["T01"])
    finally:
        hall.stop_all()


# -- only TLS, and only with the hall CA ------------------------------------------------------------


def test_plaintext_mqtt_to_the_broker_address_gets_nothing(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    password = tomllib.loads(hall.terminal_config("T01").read_text())["broker"]["password"]
    wait_for(lambda: mqtt_login(hall, "T01", password, hall.tls_context()) == "Success", 20, "T01 over TLS")
    connect = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04raw1"  # a valid MQTT 3.1.1 CONNECT
    with socket.create_connection(("127.0.0.1", hall.broker_port), timeout=5) as sock:
        sock.sendall(connect)
        sock.settimeout(5)
        try:
            answer = sock.recv(64)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20")  # no CONNACK: at most a TLS alert, then the connection closes
    assert "Success" not in mqtt_login(hall, "T01", password, None)  # paho in plaintext: no session either


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_terminal_refuses_plaintext_and_a_broker_of_another_ca(running_hall: Hall, kind: str) -> None:
    """A terminal without TLS gets nothing from the broker; one that trusts another CA refuses the
    broker's certificate; with the hall CA the same terminal delivers."""
    hall = running_hall
    config = hall.add_device("T01", "W01", kind)
    folder = config.parent
    good = (folder / "ca.crt").read_bytes()
    other_ca = own_ca(hall.home.parent / "other")[0]
    plain = tomllib.loads(config.read_text())
    plain["broker"]["ca"] = ""
    attempts = {
        "plaintext": (plain, "cannot connect to 127.0.0.1:" if kind == "micro" else "closed before the broker"),
        "another CA": (None, "not correctly signed" if kind == "micro" else "certificate verify failed"),
    }
    original = config.read_text()
    for name, (settings, expected) in attempts.items():
        if settings is None:
            config.write_text(original)
            shutil.copy(other_ca, folder / "ca.crt")
        else:
            config.write_text(tomli_w.dumps(settings))
        run = f"sim-T01-{name}"
        hall.spawn(run, "sim", "terminal", "--config", str(config), "--presses", "1", "--timeout", "5")
        wait_for(lambda run=run: hall.procs[run].poll() is not None, 30, f"{kind} {name}: the run to give up")
        log = hall.log(run)
        assert hall.procs[run].returncode != 0, log[-2000:]
        assert expected in log, log[-2000:]
    assert hall.stats(("device",))["rows"] == []  # nothing reached the hub
    config.write_text(original)
    (folder / "ca.crt").write_bytes(good)
    assert hall.sim_terminal("T01", 3).wait(90) == 0, hall.log("sim-T01")[-2000:]
    assert_invariant(hall, ["T01"])


def test_a_broker_certificate_of_the_right_ca_for_another_name_is_refused(tmp_path: Path) -> None:
    """The host name is checked too: a certificate the hall CA issued for another name (another
    hall server, say) does not pass for the broker at 127.0.0.1, on CPython nor on the firmware."""
    ca = own_ca(tmp_path / "tls", names=("other.example",))[0]
    firmware = compile_firmware(tmp_path / "fw")
    with Broker(tmp_path) as broker:  # serves that certificate
        with (
            socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
        ):
            client_tls(ca).wrap_socket(raw, server_hostname="127.0.0.1")
        with board_on(tmp_path, firmware, broker.port, ca=ca) as board:
            [line] = wait_for(lambda: logged(board, "cannot connect"), 10, "the board to refuse the certificate")
            assert "Common Name (CN) does not match" in line, line
            assert not board.status()["connected"]


# -- client certificates -----------------------------------------------------------------------------


def test_with_client_certificates_each_terminal_needs_its_own_and_a_revoked_one_is_refused(tmp_path: Path) -> None:
    with Hall(tmp_path / "hall", tls={"client_certificates": True}) as hall:
        for device, kind in (("T01", "gpio"), ("M01", "micro"), ("T02", "gpio")):
            config = hall.add_device(device, "W01", kind)
            broker = tomllib.loads(config.read_text())["broker"]
            assert (broker["ca"], broker["client_cert"], broker["client_key"]) == ("ca.crt", "client.crt", "client.key")
            assert stat.S_IMODE((config.parent / "client.key").stat().st_mode) == 0o600
            cert = certs.load_cert(config.parent / "client.crt")
            cert.verify_directly_issued_by(certs.load_cert(hall.ca))
            assert cert.subject.rfc4514_string().startswith(f"CN={device},")
        hall.start_broker()
        hall.start_hub()
        conf_lines = (hall.home / "broker" / "mosquitto.conf").read_text().splitlines()
        assert {"require_certificate true", "use_identity_as_username true"} <= set(conf_lines)
        assert hall.sim_terminal("T01", 3).wait(60) == 0, hall.log("sim-T01")[-2000:]
        assert hall.sim_terminal("M01", 3).wait(60) == 0, hall.log("sim-M01")[-2000:]
        assert_invariant(hall, ["T01", "M01"])
        # the right password without a certificate: no session
        password = tomllib.loads(hall.terminal_config("T02").read_text())["broker"]["password"]
        assert "Success" not in mqtt_login(hall, "T02", password, hall.tls_context())
        with_cert = client_tls(hall.ca, hall.terminal_config("T02").parent / "client.crt",
                               hall.terminal_config("T02").parent / "client.key")  # fmt: skip
        assert mqtt_login(hall, "T02", "", with_cert) == "Success"  # the certificate is the login
        assert haocha("device", "revoke", "T02", "--home", str(hall.home)).returncode == 0
        wait_for(lambda: "reloaded its certificate" in hall.log("broker"), 10, "the broker to reload the CRL")
        wait_for(lambda: mqtt_login(hall, "T02", "", with_cert) != "Success", 10, "T02's certificate refused")


# -- renewal ------------------------------------------------------------------------------------------


def test_tls_renew_gives_the_running_broker_a_new_certificate_and_terminals_carry_on(running_hall: Hall) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    rig = TerminalRig(hall, "T01")
    try:
        before = broker_serial(hall)
        ca_before = hall.ca.read_bytes()
        result = haocha("tls", "renew", "--days", "30", "--home", str(hall.home))
        assert result.returncode == 0, result.stderr
        new = certs.load_cert(certs.paths(hall.home).cert("broker"))
        assert 29 <= (new.not_valid_after_utc - new.not_valid_before_utc).days <= 31
        wait_for(lambda: broker_serial(hall) == new.serial_number != before, 10, "the broker to show the new one")
        assert hall.ca.read_bytes() == ca_before  # terminals keep their ca.crt
        rig.press("satisfied")
        rig.wait_acked()  # the session that was up goes on
    finally:
        rig.close()
    assert hall.sim_terminal("T01", 2).wait(60) == 0  # and a new connection trusts the renewed certificate
    status = json.loads(haocha("tls", "status", "--home", str(hall.home), "--format", "json").stdout)
    assert {row["certificate"] for row in status} >= {"ca", "broker", "http", "hub"}


# -- HTTPS and an https:// upstream ------------------------------------------------------------------


def test_the_hub_api_serves_https_with_a_certificate_of_the_hall_ca(tmp_path: Path) -> None:
    with Hall(tmp_path / "hall", http={"tls": True}) as hall:
        hall.add_window("W01")
        hall.add_device("T01", "W01")
        hall.start_broker()
        hall.start_hub()
        wait_for(lambda: port_open(hall.http_port), 20, "the hub's API")
        headers = {"Authorization": f"Bearer {hall.config.http.token}"}
        url = f"https://127.0.0.1:{hall.http_port}/api/v1/cases"
        with httpx.Client(verify=client_tls(hall.ca), headers=headers, timeout=10) as client:
            assert client.post(url, json={"case": "C1", "window": "W01"}).status_code == 201
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{hall.http_port}/metrics", timeout=10)  # the system CAs alone
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{hall.http_port}/metrics", timeout=10)  # no plain HTTP beside it
        hub_pid = hall.procs["hub"].pid
        before = broker_serial(hall, hall.http_port)
        assert haocha("tls", "renew", "--home", str(hall.home)).returncode == 0
        renewed = certs.load_cert(certs.paths(hall.home).cert("http")).serial_number
        wait_for(lambda: broker_serial(hall, hall.http_port) == renewed != before, 20, "the API's renewed certificate")
        assert hall.procs["hub"].pid == hub_pid and hall.procs["hub"].poll() is None  # no restart


def test_an_https_upstream_is_checked_against_the_configured_ca_bundle(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ca, cert, key = own_ca(tmp_path / "regional-ca")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    with RegionalSim(tls=server) as sim:
        assert sim.url.startswith("https://")
        trusting, store = make_home(tmp_path / "a", url=sim.url, ca=str(ca))
        ingest(store, [rating(1), rating(2)])
        with Sender(trusting, tmp_path / "a") as sender:
            sender.start()
            wait_for(lambda: outbox.counts(store.conn)["pending"] == 0, 20, "the records sent over HTTPS")
        assert sim.state.summary()["records"] == 2
        system_cas, other = make_home(tmp_path / "b", url=sim.url)  # no bundle: the system's CAs
        ingest(other, [rating(1)])
        with Sender(system_cas, tmp_path / "b") as sender:
            sender.start()
            wait_for(lambda: sender.failures >= 2, 20, "the sender to refuse the unknown certificate")
        assert outbox.counts(other.conn)["pending"] == 1 and sim.state.summary()["records"] == 2


def test_a_renewed_pair_caught_between_its_two_writes_never_reaches_the_live_context(tmp_path: Path) -> None:
    """tls renew writes the certificate, then the key: a check between the two leaves the live
    context on the old pair, and the next check loads the new one."""
    ca_key, ca = certs.make_ca("H1")
    cert_path, key_path = tmp_path / "http.crt", tmp_path / "http.key"
    ticks = iter(range(1, 100))

    def write(path: Path, data: bytes) -> None:  # a file system's mtime may not move within a tick
        path.write_bytes(data)
        os.utime(path, ns=(next(ticks) * 10**9, next(ticks) * 10**9))

    def pair() -> tuple[bytes, bytes]:
        key, cert = certs.issue(ca_key, ca, "127.0.0.1", 30, ["127.0.0.1"])
        return certs.key_pem(key), certs.cert_pem(cert)

    def served_by(context: ssl.SSLContext) -> bytes:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        a, b = socket.socketpair()
        with (
            context.wrap_socket(a, server_side=True, do_handshake_on_connect=False) as server,
            client.wrap_socket(b, do_handshake_on_connect=False) as peer,
        ):
            side = threading.Thread(target=server.do_handshake)
            side.start()
            peer.do_handshake()
            side.join(5)
            der = peer.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)

    old_key, old_cert = pair()
    write(key_path, old_key)
    write(cert_path, old_cert)
    live = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    live.load_cert_chain(cert_path, key_path)
    watch = RenewalWatch()
    watch.watch(live, cert_path, key_path)
    new_key, new_cert = pair()
    write(cert_path, new_cert)  # the new certificate, the old key still there
    watch.check()
    assert served_by(live) == old_cert  # still the old pair, whole
    write(key_path, new_key)
    watch.check()
    assert served_by(live) == new_cert
