"""Length-prefixed pickles over an OS pipe, between the hub daemon and its writer process.

Both ends are this program, so pickle is safe here. ``multiprocessing.connection`` reads each
frame with three system calls; on a busy two-core machine every call is a chance to be
descheduled, and a 2,000-message batch took ten times its CPU time to gather. :meth:`PipeEnd.take`
reads whatever the pipe holds in one call and returns every whole frame in it.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import select
import struct
from typing import Any

_HEADER = struct.Struct("<I")
READ_BYTES = 1 << 20
#: Pipe capacity asked for (Linux ``F_SETPIPE_SZ``; the default 64 KB holds ~200 messages).
PIPE_BYTES = 1 << 20


class PipeEnd:
    """One end of a one-way pipe: :meth:`send` on the write end, :meth:`wait`/:meth:`take` on the
    read end. Used by one thread at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()
        self._eof = False

    def send(self, obj: Any) -> None:
        """Write one frame (blocks while the pipe is full); OSError once the reader is gone."""
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view) :]

    def wait(self, timeout: float | None) -> bool:
        """True when :meth:`take` will not block: a frame is buffered, or the pipe is readable."""
        if self._eof or self._whole_frame():
            return True
        return bool(select.select([self.fd], [], [], timeout)[0])

    def take(self) -> list[Any]:
        """Every whole frame available, blocking until there is one; EOFError at the end."""
        while not self._whole_frame():
            if self._eof:
                raise EOFError("the other end closed the pipe")
            chunk = os.read(self.fd, READ_BYTES)
            if chunk:
                self._buf += chunk
            else:
                self._eof = True
        return self._frames()

    def close(self) -> None:
        os.close(self.fd)

    def _whole_frame(self) -> bool:
        if len(self._buf) < _HEADER.size:
            return False
        return len(self._buf) - _HEADER.size >= _HEADER.unpack_from(self._buf)[0]

    def _frames(self) -> list[Any]:
        frames, pos = [], 0
        while len(self._buf) - pos >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf, pos)
            end = pos + _HEADER.size + size
            if end > len(self._buf):
                break
            frames.append(pickle.loads(self._buf[pos + _HEADER.size : end]))
            pos = end
        del self._buf[:pos]
        return frames


def widen(fd: int) -> None:
    """Ask for a pipe that holds a whole batch, so a sender does not stall while the reader is
    busy. Linux only; elsewhere (or above ``pipe-max-size``) the default size works, slower."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):
        pass
