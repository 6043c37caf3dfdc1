"""The deploy path of docs/deploy.md, run from a fresh environment (SPEC section 13): the hub makes
its wheelhouse and serves it at /fleet/, the install script it serves puts the terminal into a
fresh virtual environment from the hall network alone (pip --no-index), and the installed
terminal's presses reach the hub."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from simulators.hall import Hall

REPO = Path(__file__).resolve().parent.parent
STATE = "var/lib/haocha-terminal"


def haocha(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haocha", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def fetch(hall: Hall, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{hall.http_port}{path}", timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_a_terminal_installed_from_the_hub_alone_gets_its_presses_counted(running_hall: Hall, tmp_path: Path) -> None:
    hall = running_hall
    hall.add_device("T01", "W01")
    assert fetch(hall, "/fleet/")[0] == 404  # no wheelhouse yet: says so
    made = haocha("fleet", "wheelhouse", "--arch", "native", "--home", str(hall.home))
    assert made.returncode == 0, made.stderr
    status, index = fetch(hall, "/fleet/")
    assert status == 200 and b"haocha-0.1.0-py3-none-any.whl" in index and b"lgpio-" in index
    assert fetch(hall, "/fleet/..%2Fhub.toml")[0] == 404 and fetch(hall, "/fleet/hub.db")[0] == 404
    status, script = fetch(hall, "/fleet/install-terminal.sh")
    assert status == 200 and b"@HUB_URL@" not in script

    usb = tmp_path / "usb" / "T01"  # what the technician copies from the hub
    shutil.copytree(hall.terminal_config("T01").parent, usb)
    (usb / "journal.db").write_bytes(b"a simulator's journal on the hub")
    pi = tmp_path / "pi"
    (pi / STATE).mkdir(parents=True)
    (pi / STATE / "journal.db").write_bytes(b"")  # the Pi's own, from an earlier install: kept
    install = subprocess.run(
        ["sh", "-s", "--", "--root", str(pi), str(usb)], input=script, capture_output=True, timeout=600
    )
    assert install.returncode == 0, install.stderr.decode()
    unit = (pi / "etc/systemd/system/haocha-terminal.service").read_text()
    assert "Environment=LG_WD=/var/lib/haocha-terminal" in unit
    config = pi / STATE / "terminal.toml"
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert (pi / STATE / "journal.db").read_bytes() == b""  # never replaced by the folder's

    assert (pi / STATE / "release.pub").read_text().strip() == haocha(
        "release", "key", "--home", str(hall.home)
    ).stdout.strip()
    assert (pi / "opt/haocha/launcher.py").read_bytes() == (REPO / "terminal/slots.py").read_bytes()
    assert (pi / "opt/haocha/current").resolve() == pi / "opt/haocha/slots/a"  # two slots (SPEC section 13)
    installed = pi / "opt/haocha/current/bin/haocha"  # the terminal's own program, not this checkout's
    probe = "import importlib.util as u; print([m for m in ('starlette', 'uvicorn', 'sqlite_utils') if u.find_spec(m)])"
    web = subprocess.run(
        [str(pi / "opt/haocha/current/bin/python"), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert web.stdout.strip() == "[]", web  # the hub's web stack and store stay on the hub
    pressed = subprocess.run(
        [str(installed), "sim", "terminal", "--config", str(config), "--presses", "5"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert pressed.returncode == 0, pressed.stderr
    journal = json.loads(
        subprocess.run(
            [str(installed), "terminal", "journal", "--config", str(config), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        ).stdout
    )
    assert journal["last_seq"] >= 5 and journal["pending"] == 0
    stored = hall.stored_seqs("T01")
    assert stored == [(journal["epoch"], n) for n in range(1, journal["last_seq"] + 1)]  # SPEC section 9


def test_the_install_script_refuses_a_folder_without_terminal_toml(tmp_path: Path) -> None:
    script = (REPO / "systemd" / "install-terminal.sh").read_bytes()
    done = subprocess.run(
        ["sh", "-s", "--", "--root", str(tmp_path / "pi"), str(tmp_path)], input=script, capture_output=True, timeout=30
    )
    assert done.returncode == 1
    assert done.stderr.decode().strip() == (
        f"install-terminal: {tmp_path}/terminal.toml is missing: copy the folder `haocha device add` wrote"
    )
