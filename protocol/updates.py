"""Releases and updates of terminals (SPEC section 13): what the hub and the terminals share.

A *release* is a set of files (wheels of the CPython terminal, or the firmware's modules) listed
in a :class:`Manifest` with their SHA-256 and size. The hub announces it to a terminal with an
``update`` command (:class:`protocol.commands.Update`) that carries the manifest's exact text, a
signature over those bytes and the address to fetch the files from. The text travels as it was
signed, so nothing is canonicalised twice: the terminal checks the signature over the bytes it
received, then parses them, then checks every file it downloads against them.

- CPython terminals check an ed25519 signature made with the hall's release key (its public half
  is installed with the terminal).
- MicroPython boards cannot afford ed25519: the hub signs the manifest for each board with that
  board's MAC key (HMAC-SHA256), so a manifest is authenticated for that device alone. A board's
  command carries the manifest by reference: its boot step (which has the whole heap) downloads
  ``url`` + :data:`MANIFEST_NAME` and checks the HMAC over the bytes it got, so the command a
  running board must take in stays a few hundred bytes.

A terminal reports where its update stands in its retained ``state`` (``update``:
:class:`UpdateState`), so the hub sees every step and a rollback.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import MalformedFrame

#: Release names: a version such as ``0.2.0`` or ``micro-0.2.0`` (also a folder name on the hub).
RELEASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
#: File names in a release: one level, no path (a manifest must not write outside its folder).
FILE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
MAX_FILES = 64
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Put before the manifest in a board's HMAC, so that no event MAC can pass for a manifest's.
BOARD_SIG_PREFIX = b"haocha-release\n"
#: The manifest's text: inline in a CPython terminal's command, downloaded whole by a board's boot
#: step (terminal/micro/boot_update.py reads no more), room for the 24 files a board takes.
MAX_MANIFEST_CHARS = 4096
#: The manifest's exact signed text, beside a release's files: ``url`` + this name.
MANIFEST_NAME = "manifest.json"


class ReleaseKind(enum.StrEnum):
    """Which terminals a release is for."""

    TERMINAL = "terminal"  #: the CPython terminal (wheels; Raspberry Pi)
    MICRO = "micro"  #: the MicroPython firmware (modules; ESP32)


class UpdatePhase(enum.StrEnum):
    """Where a terminal's update stands (``state.update.phase``), in the order they happen."""

    DOWNLOADING = "downloading"  #: fetching the files from the hub
    VERIFIED = "verified"  #: signature and every hash checked, installed beside the running one
    SWITCHED = "switched"  #: the new release runs, on trial until its self-test confirms it
    CONFIRMED = "confirmed"  #: the self-test passed: the new release stays
    ROLLED_BACK = "rolled_back"  #: no confirmation: the previous release runs again
    FAILED = "failed"  #: refused before switching (bad signature, hash, download): nothing changed


#: Phases after which a terminal does nothing more for that release.
FINAL_PHASES = frozenset({UpdatePhase.CONFIRMED, UpdatePhase.ROLLED_BACK, UpdatePhase.FAILED})


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseFile:
    name: str
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    release: str
    kind: ReleaseKind
    files: tuple[ReleaseFile, ...]

    def encode(self) -> bytes:
        """The text that is signed and sent: compact JSON, keys sorted, files in name order."""
        files = [[f.name, f.sha256, f.size] for f in sorted(self.files, key=lambda f: f.name)]
        body = {"files": files, "kind": self.kind.value, "release": self.release}
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, text: bytes | str) -> Manifest:
        """The manifest ``text`` holds; MalformedFrame naming what is wrong."""
        if len(text) > MAX_MANIFEST_CHARS:
            raise _malformed("manifest", f"longer than {MAX_MANIFEST_CHARS} characters")
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise _malformed("manifest", "not JSON") from None
        if not isinstance(obj, dict):
            raise _malformed("manifest", "expected a JSON object")
        return cls.parse(obj)

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> Manifest:
        release, kind, files = obj.get("release"), obj.get("kind"), obj.get("files")
        if not isinstance(release, str) or not valid_release(release):
            raise _malformed("release", "expected a release name of 1-32 of A-Z a-z 0-9 . _ + -")
        if not isinstance(kind, str) or kind not in ReleaseKind.__members__.values():
            raise _malformed("kind", f"expected one of {', '.join(k.value for k in ReleaseKind)}")
        if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
            raise _malformed("files", f"expected a list of 1..{MAX_FILES} files")
        entries = tuple(_file(entry) for entry in files)
        if len({f.name for f in entries}) != len(entries):
            raise _malformed("files", "a file is listed twice")
        return cls(release, ReleaseKind(kind), entries)


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateState:
    """A terminal's ``update`` state field: the release it is moving to and how far it got."""

    release: str
    phase: UpdatePhase
    detail: str = ""  #: why, for ``failed`` and ``rolled_back``; at most 200 characters

    def fields(self) -> dict[str, str]:
        return {"release": self.release, "phase": self.phase.value, "detail": self.detail}

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> UpdateState:
        return cls(obj["release"], UpdatePhase(obj["phase"]), obj.get("detail", ""))


def board_signature(mac_key: bytes, manifest: bytes) -> str:
    """A manifest authenticated for one board: HMAC-SHA256 with its MAC key, lowercase hex."""
    return hmac.new(mac_key, BOARD_SIG_PREFIX + manifest, hashlib.sha256).hexdigest()


def valid_release(value: object) -> bool:
    return isinstance(value, str) and RELEASE_RE.fullmatch(value) is not None


def valid_update_state(value: object) -> bool:
    """The check :data:`protocol.frames.STATE_FIELDS` runs on ``update``."""
    if not isinstance(value, dict) or not valid_release(value.get("release")):
        return False
    detail = value.get("detail", "")
    return value.get("phase") in UpdatePhase.__members__.values() and isinstance(detail, str) and len(detail) <= 200


def _file(entry: object) -> ReleaseFile:
    if not isinstance(entry, list) or len(entry) != 3:
        raise _malformed("files", "expected [name, sha256, size] for every file")
    name, sha256, size = entry
    if not isinstance(name, str) or FILE_NAME_RE.fullmatch(name) is None or ".." in name:
        raise _malformed("files", f"file name {str(name)[:40]!r} is not a plain file name")
    if not isinstance(sha256, str) or _SHA256_RE.fullmatch(sha256) is None:
        raise _malformed("files", f"{name}: expected 64 lowercase hex digits of SHA-256")
    if type(size) is not int or not 0 <= size <= MAX_FILE_BYTES:
        raise _malformed("files", f"{name}: expected a size of 0..{MAX_FILE_BYTES} bytes")
    return ReleaseFile(name, sha256, size)


def _malformed(name: str, why: str) -> MalformedFrame:
    return MalformedFrame(f"field {name!r}: {why}")
