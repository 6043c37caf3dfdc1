"""The hub's part in a firmware update, played for the tests (SPEC section 13): a release of the
firmware's modules compiled as the simulated board runs them, its manifest signed for one board
(``protocol.updates.board_signature``), its files served over real HTTP on loopback, and a
watcher of the board's retained ``state`` on the real broker."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from protocol import commands
from protocol.errors import MalformedFrame
from protocol.state import State
from protocol.topics import Leaf, topic
from protocol.transport import client_tls
from protocol.updates import MANIFEST_NAME, Manifest, ReleaseFile, ReleaseKind, board_signature
from simulators.hall import free_port, wait_for
from terminal.micro_host import RELEASE_FILES, compile_firmware, find_mpy_cross, firmware_source


def build_release(folder: Path, release: str, sources: dict[str, str] | None = None) -> dict[str, bytes]:
    """The files of ``release``: every firmware module but the boot step, compiled with mpy-cross as
    the simulated board runs them. ``sources`` replaces modules (a broken release): a name ending
    ``.mpy`` is compiled from the text given, one ending ``.py`` ships as source."""
    work = folder / f"build-{release}"
    compile_firmware(work)
    files: dict[str, bytes] = {}
    for name in RELEASE_FILES:
        files[name[:-3] + ".mpy"] = (work / (name[:-3] + ".mpy")).read_bytes()
    for name, text in (sources or {}).items():
        stem = name[: name.rindex(".")]
        files.pop(stem + ".mpy", None)
        if name.endswith(".py"):  # shipped as source: the board compiles it (and meets its errors)
            files[name] = text.encode()
        else:
            files[name] = compile_source(work, stem, text)
    return files


def compile_source(work: Path, stem: str, text: str) -> bytes:
    src, out = work / f"{stem}.py", work / f"{stem}.mpy"
    src.write_text(text)
    compiler = find_mpy_cross()
    assert compiler is not None, "mpy-cross (the sim extra) is needed"
    subprocess.run([compiler, "-s", f"{stem}.py", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def source(name: str) -> str:
    return firmware_source(name).read_text()


class ReleaseServer:
    """Serves ``root/<release>/<file>`` over HTTP (HTTPS with ``tls``) on a free loopback port, in a
    thread; with ``slow``, each file trickles out in 1 KB pieces every 0.2 s (a download to
    interrupt)."""

    def __init__(self, root: Path, slow: bool = False, tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Handler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.slow = slow  # type: ignore[attr-defined]
        self.scheme = "http"
        if tls is not None:  # HTTPS with this certificate and key (the hub's, from the hall CA)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, release: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/{release}/"

    def publish(self, release: str, files: dict[str, bytes]) -> Manifest:
        """Put ``files`` online under ``release`` with their manifest (``manifest.json``, as the
        hub serves it); the manifest that lists them as they are."""
        folder = self.root / release
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return self.put_manifest(manifest(release, files))

    def put_manifest(self, m: Manifest, release: str | None = None) -> Manifest:
        """Serve ``m``'s text as the manifest of ``release`` (its own by default)."""
        folder = self.root / (release or m.release)
        folder.mkdir(exist_ok=True)
        (folder / MANIFEST_NAME).write_bytes(m.encode())
        return m

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ReleaseServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if not getattr(self.server, "slow", False):
            super().copyfile(source, outputfile)
            return
        while piece := source.read(1024):
            outputfile.write(piece)
            outputfile.flush()
            time.sleep(0.2)


def manifest(release: str, files: dict[str, bytes]) -> Manifest:
    entries = tuple(ReleaseFile(n, hashlib.sha256(d).hexdigest(), len(d)) for n, d in files.items())
    return Manifest(release, ReleaseKind.MICRO, entries)


def update_command(m: Manifest | bytes, key: bytes, url: str, release: str | None = None) -> bytes:
    """The ``update`` command of manifest ``m`` (a Manifest, or its text as bytes), signed with
    ``key``, as the hub sends it to a board: by reference (the board fetches ``url`` +
    ``manifest.json``)."""
    text = m.encode() if isinstance(m, Manifest) else m
    name = release or json.loads(text)["release"]
    return commands.encode(commands.Update(name, None, board_signature(key, text), url))


class StateWatcher:
    """Every retained ``state`` the device publishes, as dicts (a paho client on the broker)."""

    def __init__(self, port: int, ca: Path | None, hall: str = "H1", device: str = "M01") -> None:
        self.states: list[dict[str, Any]] = []
        self.invalid: list[str] = []  # states the hub would refuse, and why
        self.lock = threading.Lock()
        self.cmd_topic = topic(hall, device, Leaf.CMD)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{device}-{free_port()}")
        if ca is not None:
            self.client.tls_set_context(client_tls(ca))
        state_topic = topic(hall, device, Leaf.STATE)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(state_topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(self.client.is_connected, 10, "the state watcher to connect")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            State.decode(msg.payload)  # as the hub reads it
        except MalformedFrame as exc:
            self.invalid.append(f"{exc}: {msg.payload[:300]!r}")
        with self.lock:
            self.states.append(json.loads(msg.payload))

    def send(self, payload: bytes) -> None:
        """Publish a command on the device's ``cmd`` topic, as the hub does."""
        self.client.publish(self.cmd_topic, payload, qos=1).wait_for_publish(10)

    def phases(self, release: str) -> list[str]:
        with self.lock:
            return [s["update"]["phase"] for s in self.states if s.get("update", {}).get("release") == release]

    def last(self) -> dict[str, Any]:
        with self.lock:
            return self.states[-1] if self.states else {}

    def wait_phase(self, release: str, phase: str, timeout: float = 30) -> dict[str, Any]:
        """The first state reporting ``release`` at ``phase``."""

        def found() -> dict[str, Any] | None:
            with self.lock:
                for s in self.states:
                    u = s.get("update") or {}
                    if u.get("release") == release and u.get("phase") == phase:
                        return s
            return None

        state: dict[str, Any] = wait_for(found, timeout, f"release {release} {phase}")
        return state

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> StateWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def folder_digest(code_dir: Path, keep: Callable[[str], bool] | None = None) -> dict[str, str]:
    """name → sha256 of the firmware's modules and release name in ``code_dir`` (a board's flash)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(code_dir.iterdir())
        if p.is_file()
        and (p.suffix in (".py", ".mpy") or p.name == "release.txt")
        and (keep or (lambda n: True))(p.name)
    }
