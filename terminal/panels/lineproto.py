"""The framed line protocol of serial evaluator panels (docs/panels.md), built and parsed here only.

A frame is ``$`` + ASCII body + ``*`` + CRC-16/CCITT-FALSE of the body as four upper-case hex
digits + CR LF, e.g. ``$P,3,17,2*1A2B\\r\\n``. The body is a type letter and decimal fields
separated by commas. Readable on a terminal emulator, and every ``$`` starts a new frame, so a
receiver resynchronises on the next frame after noise. Whatever is not a valid frame is counted
(:attr:`FrameParser.counts`) and skipped; the parser never raises on line data.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Sequence
from dataclasses import dataclass

START = b"$"
END = b"\r\n"
MAX_FRAME = 80  #: bytes from ``$`` to LF; longer is a framing error


class Msg(enum.Enum):
    """Frame types and their number of integer fields."""

    PRESS = "P"  #: panel → terminal: boot, press id, button; repeated until acknowledged
    HEARTBEAT = "H"  #: panel → terminal: boot, presses queued
    IDENT = "I"  #: panel → terminal: vendor, model, firmware, serial, buttons (at power-up and on Q)
    ACK = "A"  #: terminal → panel: boot, press id, sent after the journal commit
    LIGHTS = "L"  #: terminal → panel: ready, reason, thanks, beep seq, beep pattern
    QUERY = "Q"  #: terminal → panel: send IDENT


ARITY = {Msg.PRESS: 3, Msg.HEARTBEAT: 2, Msg.IDENT: 5, Msg.ACK: 2, Msg.LIGHTS: 5, Msg.QUERY: 0}


@dataclass(frozen=True, slots=True)
class Frame:
    msg: Msg
    args: tuple[int, ...]


def crc16(body: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    return binascii.crc_hqx(body, 0xFFFF)


def encode(msg: Msg, *args: int) -> bytes:
    if len(args) != ARITY[msg]:
        raise ValueError(f"{msg.name} takes {ARITY[msg]} fields, got {len(args)}")
    body = ",".join([msg.value, *(str(int(a)) for a in args)]).encode("ascii")
    return START + body + b"*" + f"{crc16(body):04X}".encode("ascii") + END


def decode_body(body: bytes) -> Frame | None:
    """The frame of a checksummed body, or None if its fields are malformed."""
    try:
        parts = body.decode("ascii").split(",")
        msg = Msg(parts[0])
        args = tuple(int(p) for p in parts[1:])
    except (UnicodeDecodeError, ValueError):
        return None
    if len(args) != ARITY[msg] or any(a < 0 or a > 0xFFFFFFFF for a in args):
        return None
    return Frame(msg, args)


class FrameParser:
    """Bytes in, frames out. Counts: ``frames`` good, ``garbage_bytes`` outside any frame,
    ``framing`` (no CR LF, too long, a new ``$`` inside a frame), ``bad_checksum``, ``malformed``
    (checksum right, fields wrong)."""

    def __init__(self) -> None:
        self._buf = b""
        self.counts = {"frames": 0, "garbage_bytes": 0, "framing": 0, "bad_checksum": 0, "malformed": 0}

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while self._buf:
            frame, more = self._next()
            if frame is not None:
                frames.append(frame)
            if not more:
                break
        return frames

    def _next(self) -> tuple[Frame | None, bool]:
        """Consume what the buffer allows; (frame or None, whether to look again)."""
        start = self._buf.find(START)
        if start < 0:
            self.counts["garbage_bytes"] += len(self._buf)
            self._buf = b""
            return None, False
        if start:
            self.counts["garbage_bytes"] += start
            self._buf = self._buf[start:]
        end = self._buf.find(b"\n")
        restart = self._buf.find(START, 1)
        if restart >= 0 and (end < 0 or restart < end):
            self.counts["framing"] += 1  # a frame cut short by the next one
            self._buf = self._buf[restart:]
            return None, True
        if end < 0:
            if len(self._buf) > MAX_FRAME:
                self.counts["framing"] += 1
                self._buf = self._buf[1:]
                return None, True
            return None, False
        raw, self._buf = self._buf[: end + 1], self._buf[end + 1 :]
        return self._check(raw), True

    def _check(self, raw: bytes) -> Frame | None:
        """``raw`` runs from ``$`` to LF: ``$`` body ``*`` XXXX CR LF."""
        if len(raw) > MAX_FRAME or not raw.endswith(END) or raw[-7:-6] != b"*":
            self.counts["framing"] += 1
            return None
        body, crc_text = raw[1:-7], raw[-6:-2]
        try:
            crc = int(crc_text.decode("ascii"), 16)
        except (UnicodeDecodeError, ValueError):
            self.counts["framing"] += 1
            return None
        if crc != crc16(body):
            self.counts["bad_checksum"] += 1
            return None
        frame = decode_body(body)
        self.counts["frames" if frame is not None else "malformed"] += 1
        return frame


def frames_of(data: bytes | Sequence[bytes]) -> list[Frame]:
    """Parse a whole capture (tests)."""
    parser = FrameParser()
    chunks = [data] if isinstance(data, bytes) else list(data)
    return [f for chunk in chunks for f in parser.feed(chunk)]
