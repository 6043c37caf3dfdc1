"""Signed releases and their staged rollout (SPEC section 13; the words are :mod:`protocol.updates`).

``release build`` puts a release's files, its manifest (the exact signed text) and, for CPython
terminals, the ed25519 signature (:mod:`hub.release_key`) into ``{home}/releases/<release>/``,
served read-only at ``/fleet/releases/<release>/``. ``release rollout`` widens the set of devices
it is announced to (one device, a window, a share of the hall, all): each gets an ``update``
command through the hub's command queue (:mod:`hub.commands`), so a terminal that is away gets it
when it is back. Boards get the manifest signed with their own MAC key
(:func:`protocol.updates.board_signature`) and by reference: their command names the release
folder, whose ``manifest.json`` is the text signed. Terminals report each step in their state; ingest
stores it here (:func:`record_update`), and a rollback anywhere pauses the rollout.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import commands
from protocol.updates import (
    BOARD_SIG_PREFIX,
    MANIFEST_NAME,
    Manifest,
    ReleaseFile,
    ReleaseKind,
    UpdatePhase,
    board_signature,
)
from protocol.updates import valid_release as _valid_release

from .config import HubConfig
from .errors import HubError
from .fleet import SOURCE, _package_sources
from .store import Store, now_ms
from .store.registry import get_device

RELEASES = "releases"
SIG_NAME = "manifest.sig"
_WHEEL_RE = re.compile(r"haocha-([0-9A-Za-z.+_]+?)-py3-none-any\.whl")
#: Firmware modules that never go to a board: the simulated board (host only).
MICRO_SKIP = frozenset({"sim_board.py"})

__all__ = ["BOARD_SIG_PREFIX", "ReleaseError", "build", "list_releases", "record_update", "rollout", "status"]


class ReleaseError(HubError, ValueError):
    """A release that cannot be built or rolled out (one line saying why)."""


@dataclass(frozen=True)
class Scope:
    """Whom a rollout call adds: named devices, a window's, a share of the hall's, or all."""

    devices: tuple[str, ...] = ()
    window: str | None = None
    share: float | None = None  #: percent, 0 < share <= 100
    everyone: bool = False

    def describe(self) -> str:
        if self.everyone:
            return "all"
        if self.share is not None:
            return f"share {self.share:g}%"
        return f"window {self.window}" if self.window else "devices " + ",".join(self.devices)


def releases_dir(home: Path) -> Path:
    return home / RELEASES


def release_dir(home: Path, release: str) -> Path:
    if not _valid_release(release):
        raise ReleaseError(f"{release[:40]!r} is not a release name (1-32 of A-Z a-z 0-9 . _ + -)")
    return releases_dir(home) / release


# -- build --------------------------------------------------------------------------------


def build(
    store: Store, home: Path, kind: ReleaseKind, release: str | None = None, wheel: Path | None = None,
    source: Path = SOURCE, actor: str = "cli",
) -> Manifest:  # fmt: skip
    """Make ``{home}/releases/<release>/`` and register the release; return its manifest."""
    with tempfile.TemporaryDirectory(prefix="haocha-release-") as scratch:
        staged = Path(scratch) / "files"
        staged.mkdir()
        if kind is ReleaseKind.TERMINAL:
            release = _stage_wheel(staged, release, wheel, source)
        else:
            if release is None:
                raise ReleaseError("a firmware release needs a name: --release micro-X.Y.Z")
            _stage_firmware(staged, source)
        folder = release_dir(home, release)
        if folder.exists() or _registered(store, release):
            raise ReleaseError(f"release {release} exists already (releases never change: build another)")
        files = tuple(_entry(path) for path in sorted(staged.iterdir()))
        manifest = Manifest(release, kind, files)
        text = manifest.encode()
        Manifest.decode(text)  # fits a command (MAX_MANIFEST_CHARS), names plain files
        from . import release_key  # the cryptography package, only where releases are signed

        sig = release_key.sign(home, text) if kind is ReleaseKind.TERMINAL else ""
        (staged / MANIFEST_NAME).write_bytes(text)
        if sig:
            (staged / SIG_NAME).write_text(sig + "\n")
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, folder)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO releases (release, kind, manifest, sig, created_ms) VALUES (?, ?, ?, ?, ?)",
            (release, kind.value, text.decode(), sig, now_ms()),
        )
        store.audit(actor, "release.build", release, kind=kind.value, files=[f.name for f in files])
    return manifest


def _entry(path: Path) -> ReleaseFile:
    data = path.read_bytes()
    return ReleaseFile(path.name, hashlib.sha256(data).hexdigest(), len(data))


def _stage_wheel(into: Path, release: str | None, wheel: Path | None, source: Path) -> str:
    if wheel is None:
        with tempfile.TemporaryDirectory(prefix="haocha-wheel-") as scratch:
            tree = Path(scratch) / "src"
            tree.mkdir()
            command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", "wheel", "--no-deps"]
            sources = _package_sources(source, tree)
            done = subprocess.run([*command, "--wheel-dir", str(into), str(sources)], capture_output=True, text=True)
            if done.returncode != 0:
                raise ReleaseError(f"pip wheel failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        wheel = next(iter(sorted(into.glob("haocha-*.whl"))), None)
        if wheel is None:
            raise ReleaseError("pip wheel made no haocha wheel")
    elif not wheel.is_file():
        raise ReleaseError(f"no wheel at {wheel}")
    match = _WHEEL_RE.fullmatch(wheel.name)
    if match is None:
        raise ReleaseError(f"{wheel.name} is not a haocha wheel (haocha-VERSION-py3-none-any.whl)")
    if release is not None and release != match.group(1):
        raise ReleaseError(f"a terminal release is named by its wheel's version ({match.group(1)}), not {release}")
    _check_reported_version(wheel, match.group(1))
    if wheel.parent != into:
        shutil.copy2(wheel, into / wheel.name)
    return match.group(1)


def _check_reported_version(wheel: Path, version: str) -> None:
    """The version the terminal reports (``fw``: terminal/__init__.py) must be the wheel's: the
    updater confirms a trial only when it runs the release it switched to."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            text = archive.read("terminal/__init__.py").decode()
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
        raise ReleaseError(f"{wheel.name} is not a haocha wheel with the terminal in it") from None
    said = re.search(r'__version__ = "([^"]*)"', text)
    if said is None or said.group(1) != version:
        found = said.group(1) if said else "nothing"
        raise ReleaseError(f"{wheel.name}: its terminal/__init__.py says {found}, not {version}: set both versions")


def _stage_firmware(into: Path, source: Path) -> None:
    """The firmware's modules (never config.json or key files) and the shared core.py and conf.py."""
    micro = source / "terminal" / "micro"
    modules = [p for p in sorted(micro.glob("*.py")) if p.name not in MICRO_SKIP]
    if not modules:
        raise ReleaseError(f"no firmware modules in {micro}")
    for module in modules:
        shutil.copy2(module, into / module.name)
    for shared in ("core.py", "conf.py"):  # the rules and the configuration code both terminals run
        shutil.copy2(source / "terminal" / shared, into / shared)


def _registered(store: Store, release: str) -> bool:
    return store.conn.execute("SELECT 1 FROM releases WHERE release = ?", (release,)).fetchone() is not None


def served_file(home: Path, release: str, name: str) -> Path | None:
    """A file of a release as ``/fleet/releases/`` serves it: only names its manifest lists (and
    the manifest and signature), so no path reaches anything else."""
    if not _valid_release(release):
        return None
    folder = releases_dir(home) / release
    try:
        manifest = Manifest.decode((folder / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    allowed = {f.name for f in manifest.files} | {MANIFEST_NAME, SIG_NAME}
    path = folder / name
    return path if name in allowed and path.is_file() else None


# -- rollout ------------------------------------------------------------------------------


def default_url(config: HubConfig) -> str:
    """Where terminals fetch from: the hub's HTTP address (its broker host when it listens on
    every interface)."""
    host = config.http.host if config.http.host not in ("0.0.0.0", "::", "") else config.broker.host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if config.http.tls else 'http'}://{host}:{config.http.port}"


def rollout(
    store: Store, config: HubConfig, release: str, scope: Scope, force: bool = False, base_url: str | None = None,
    actor: str = "cli",
) -> list[str]:  # fmt: skip
    """Announce ``release`` to the devices ``scope`` adds; return those newly announced."""
    row = store.conn.execute(
        "SELECT kind, manifest, sig, paused_reason FROM releases WHERE release = ?", (release,)
    ).fetchone()
    if row is None:
        raise ReleaseError(f"no release {release[:40]!r} (haocha release list)")
    kind, manifest, sig, paused = ReleaseKind(row[0]), row[1], row[2], row[3]
    if paused and not force:
        raise ReleaseError(f"the rollout of {release} is paused: {paused} (look, then widen with --force)")
    targets = _chosen(store, release, kind, scope)
    url = f"{(base_url or default_url(config)).rstrip('/')}/fleet/{RELEASES}/{release}/"
    with store.transaction() as conn:
        known = {r[0] for r in conn.execute("SELECT device FROM release_devices WHERE release = ?", (release,))}
        fresh = [d for d in targets if d not in known]
        for device in fresh:
            if kind is ReleaseKind.TERMINAL:
                command = commands.Update(release, manifest, sig, url)
            else:  # by reference: the board fetches url + manifest.json (served_file), the text signed
                board_sig = board_signature(_mac_key(store, device), manifest.encode())
                command = commands.Update(release, None, board_sig, url)
            _queue(conn, device, command)
            conn.execute(
                "INSERT INTO release_devices (release, device, announced_ms) VALUES (?, ?, ?)",
                (release, device, now_ms()),
            )
        if force:
            conn.execute("UPDATE releases SET paused_ms = NULL, paused_reason = NULL WHERE release = ?", (release,))
        store.audit(actor, "release.rollout", release, scope=scope.describe(), devices=fresh, force=force)
    return fresh


def _chosen(store: Store, release: str, kind: ReleaseKind, scope: Scope) -> list[str]:
    rows = store.conn.execute("SELECT id, window, kind, revoked FROM devices ORDER BY id").fetchall()
    fits = [(d, w) for d, w, k, revoked in rows if not revoked and (k == "micro") == (kind is ReleaseKind.MICRO)]
    if scope.everyone:
        return [d for d, _ in fits]
    if scope.share is not None:
        if not 0 < scope.share <= 100:
            raise ReleaseError("--share is a percentage: more than 0, at most 100")
        ranked = sorted((hashlib.sha256(f"{release}/{d}".encode()).hexdigest(), d) for d, _ in fits)
        return [d for _, d in ranked[: math.ceil(len(ranked) * scope.share / 100)]]
    if scope.window is not None:
        chosen = [d for d, w in fits if w == scope.window]
        if not chosen:
            raise ReleaseError(f"no {kind.value} device at window {scope.window[:40]!r}")
        return chosen
    known = {d for d, _ in fits}
    for device in scope.devices:
        if device not in known:
            raise ReleaseError(f"{device[:40]!r} is no active {kind.value} device (haocha device list)")
    return list(dict.fromkeys(scope.devices))


def _mac_key(store: Store, device: str) -> bytes:
    return get_device(store, device).mac_key


def _queue(conn: sqlite3.Connection, device: str, command: commands.Update) -> None:
    """For the hub's publisher (hub.commands), no expiry: a terminal that is away gets it later."""
    conn.execute(
        "INSERT INTO commands (device, payload, created_ms) VALUES (?, ?, ?)",
        (device, json.dumps(commands.payload(command), ensure_ascii=False), now_ms()),
    )


# -- what terminals report ----------------------------------------------------------------


def record_update(conn: sqlite3.Connection, device: str, update: dict[str, Any], at_ms: int) -> None:
    """A state's ``update`` field (checked by protocol.frames): the device's phase for that release.
    A rollback (newly reported) pauses the release's rollout. Updates never announced are ignored."""
    release, phase, detail = update["release"], update["phase"], update.get("detail", "")
    changed = conn.execute(
        "UPDATE release_devices SET phase = ?, detail = ?, phase_ms = ? "
        "WHERE release = ? AND device = ? AND (phase IS NULL OR phase != ? OR detail != ?)",
        (phase, detail, at_ms, release, device, phase, detail),
    ).rowcount
    if changed and phase == UpdatePhase.ROLLED_BACK.value:
        conn.execute(
            "UPDATE releases SET paused_ms = ?, paused_reason = ? WHERE release = ?",
            (at_ms, f"{device} rolled back: {detail}"[:240], release),
        )


def status(store: Store, release: str | None = None) -> list[dict[str, Any]]:
    """Per announced device: release, device, phase (``announced`` until it reports), detail, when
    (ms), and the version it runs now."""
    where, params = ("WHERE r.release = ?", (release,)) if release else ("", ())
    cur = store.conn.execute(
        "SELECT r.release, r.device, r.phase, r.detail, coalesce(r.phase_ms, r.announced_ms), d.state "
        f"FROM release_devices r LEFT JOIN devices d ON d.id = r.device {where} ORDER BY r.release, r.device",
        params,
    )
    rows = []
    for rel, device, phase, detail, at_ms, state in cur:
        running = _state_field(state, "fw")
        rows.append(
            {
                "release": rel,
                "device": device,
                "phase": phase or "announced",
                "detail": detail or "",
                "at_ms": at_ms,
                "running": running,
            }
        )
    return rows


def list_releases(store: Store) -> list[dict[str, Any]]:
    cur = store.conn.execute(
        "SELECT r.release, r.kind, r.created_ms, r.manifest, r.paused_reason, "
        "(SELECT count(*) FROM release_devices x WHERE x.release = r.release), "
        "(SELECT count(*) FROM release_devices x WHERE x.release = r.release AND x.phase = 'confirmed'), "
        "(SELECT count(*) FROM release_devices x WHERE x.release = r.release AND x.phase = 'rolled_back'), "
        "(SELECT count(*) FROM release_devices x WHERE x.release = r.release AND x.phase = 'failed') "
        "FROM releases r ORDER BY r.created_ms, r.release"
    )
    return [
        {
            "release": rel,
            "kind": kind,
            "created_ms": created,
            "files": len(Manifest.decode(text).files),
            "announced": n,
            "confirmed": ok,
            "rolled_back": back,
            "failed": failed,
            "paused": paused or "",
        }
        for rel, kind, created, text, paused, n, ok, back, failed in cur
    ]


def device_phases(store: Store) -> dict[str, str]:
    """Each device's newest update: ``release phase`` (``device list``)."""
    cur = store.conn.execute(
        "SELECT device, release, coalesce(phase, 'announced') FROM release_devices "
        "ORDER BY coalesce(phase_ms, announced_ms)"
    )
    return {device: f"{release} {phase}" for device, release, phase in cur}


def _state_field(text: str | None, name: str) -> Any:
    try:
        state = json.loads(text) if text else {}
    except ValueError:
        return None
    return state.get(name) if isinstance(state, dict) else None
