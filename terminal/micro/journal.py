"""The firmware's journal: an append-only, CRC-checked log on flash (SPEC section 3, rule 1).

Everything lives in one folder:

- ``meta.json``: ``{"device", "epoch", "last_seq", "acked"}``, replaced whole (written to
  ``meta.tmp`` then renamed), so ``epoch`` and ``last_seq`` survive when every record has been acked
  and its segment deleted;
- ``seg-<first seq>.log``: segments of records. A record is ``<u32 length><u32 crc32>`` followed
  by its payload, ``<u64 seq>`` and the event body as JSON. A segment holds at most
  :data:`_SEG_RECORDS` records; once every record of a segment is acked the file is deleted, so
  flash use stays bounded by the unacked backlog plus one segment.

A power cut mid-write leaves a torn record at the end of the last segment: :class:`Journal`
finds it when it opens (short header, short payload, CRC mismatch or a seq out of order) and cuts
the segment back to its last whole record. A torn record was never committed (the append had not
returned, no light was shown, nothing was sent), so its seq is free to be used again; a committed
seq is never reused. There is no ``os.fsync`` in MicroPython: every append is flushed (on
littlefs, a flush commits the file).
"""

import binascii
import json
import os
import struct

try:
    from micropython import const
except ImportError:  # CPython: terminal.micro_host reads a board's journal with read_record

    def const(n):
        return n


META = "meta.json"
META_TMP = "meta.tmp"
_SEG_RECORDS = const(128)
_MAX_PAYLOAD = const(2048)
_COPY_CHUNK = const(256)


class JournalError(OSError):
    """The journal cannot be opened or written: the press is NOT accepted."""


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    parts = path.split("/")
    cur = ""
    for i, part in enumerate(parts):
        cur = part if i == 0 else cur + "/" + part
        if cur and not _exists(cur):
            os.mkdir(cur)


def replace(src, dst):
    """Rename ``src`` over ``dst``: atomic on littlefs and POSIX. FAT cannot rename over a file:
    there ``dst`` is removed first, and :class:`Journal` finds ``src`` if power fails between."""
    try:
        os.rename(src, dst)
    except OSError:
        os.remove(dst)
        os.rename(src, dst)


def read_record(f):
    """The next record of segment file ``f`` as (seq, body bytes, record length), or None at the end
    of the file or at a torn or corrupt record."""
    head = f.read(8)
    if not head or len(head) < 8:
        return None
    length, crc = struct.unpack("<II", head)
    if length < 8 or length > _MAX_PAYLOAD:
        return None
    payload = f.read(length)
    if payload is None or len(payload) < length or binascii.crc32(payload) & 0xFFFFFFFF != crc:
        return None
    return struct.unpack("<Q", payload[:8])[0], payload[8:], 8 + length


class Journal:
    def __init__(self, folder, device, urandom=os.urandom):
        self.folder = folder.rstrip("/") or "/"
        self.device = device
        self._f = None
        self._cursor = None  # (segment first seq, file offset, seq at that offset)
        _makedirs(self.folder)
        self.segs = self._list_segments()
        meta = self._read_meta()
        if meta is None:
            if self.segs:
                raise JournalError("journal %s has segments but no meta.json" % self.folder)
            meta = {"device": device, "epoch": hexlify(urandom(16)), "last_seq": 0, "acked": 0}
            self.epoch, self.acked, self.last_seq = meta["epoch"], 0, 0
            self._write_meta()
        elif meta.get("device") != device:
            raise JournalError("journal %s belongs to device %r, not %r" % (self.folder, meta.get("device"), device))
        self.epoch = meta["epoch"]
        self.acked = int(meta["acked"])
        self._seg_count = 0
        self._seg_size = 0
        self.last_seq = max(int(meta["last_seq"]), self.acked, self._recover_tail())

    # -- files ------------------------------------------------------------------------------
    def _path(self, name):
        return self.folder + "/" + name

    def _seg_path(self, first):
        return self.folder + "/seg-%d.log" % first

    def _list_segments(self):
        firsts = []
        names = os.listdir(self.folder)
        for name in names:
            if name.startswith("seg-") and name.endswith(".log.tmp"):
                if name[:-4] in names:
                    os.remove(self._path(name))  # a cut that never finished: the original stands
                    continue
                os.rename(self._path(name), self._path(name[:-4]))  # FAT: cut done, rename was not
                name = name[:-4]
            if name.startswith("seg-") and name.endswith(".log"):
                firsts.append(int(name[4:-4]))
        firsts.sort()
        return firsts

    def _read_meta(self):
        for name in (META, META_TMP):
            try:
                with open(self._path(name)) as f:
                    meta = json.loads(f.read())
                if "epoch" in meta and "acked" in meta and "last_seq" in meta:
                    return meta
            except (OSError, ValueError):
                pass
        return None

    def _write_meta(self):
        text = '{"device":%s,"epoch":"%s","last_seq":%d,"acked":%d}' % (
            json.dumps(self.device), self.epoch, self.last_seq, self.acked)
        tmp = self._path(META_TMP)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
        replace(tmp, self._path(META))

    def _recover_tail(self):
        """Scan the last segment, cut a torn tail; return the last committed seq found there."""
        self.cut_bytes = 0
        if not self.segs:
            return 0
        first = self.segs[-1]
        path = self._seg_path(first)
        size = os.stat(path)[6]
        good, count, expect = 0, 0, first
        with open(path, "rb") as f:
            while True:
                rec = read_record(f)
                if rec is None or rec[0] != expect:
                    break
                good += rec[2]
                count += 1
                expect += 1
        if good < size:
            self.cut_bytes = size - good
            self._cut(path, good)
        if count == 0:
            os.remove(path)
            self.segs.pop()
            return first - 1
        self._seg_count, self._seg_size = count, good
        return expect - 1

    def _cut(self, path, length):
        """Keep the first ``length`` bytes of ``path`` (no truncate() in MicroPython: copy, rename)."""
        tmp = path + ".tmp"
        buf = bytearray(_COPY_CHUNK)
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            left = length
            while left > 0:
                n = src.readinto(buf)
                if not n:
                    break
                n = min(n, left)
                dst.write(buf if n == _COPY_CHUNK else memoryview(buf)[:n])
                left -= n
            dst.flush()
        replace(tmp, path)

    # -- writing ----------------------------------------------------------------------------
    def local_case(self, seq):
        return "%s-%s-%d" % (self.device, self.epoch[:8], seq)

    def append(self, body):
        """Commit one event body (a dict) and return its seq (``last_seq + 1``); JournalError if it
        was not written. The evaluator checks the row against the rules first."""
        seq = self.last_seq + 1
        payload = struct.pack("<Q", seq) + json.dumps(body).encode()
        if len(payload) > _MAX_PAYLOAD:
            raise JournalError("event body too large")
        head = struct.pack("<II", len(payload), binascii.crc32(payload) & 0xFFFFFFFF)
        try:
            if self._f is None or self._seg_count >= _SEG_RECORDS:
                self._open_segment(seq)
            self._f.write(head)
            self._f.write(payload)
            self._f.flush()
        except OSError as exc:
            self._repair()
            raise JournalError("journal write failed: %s" % exc)
        self._seg_count += 1
        self._seg_size += len(head) + len(payload)
        self.last_seq = seq
        return seq

    def _open_segment(self, seq):
        if self._f is not None:
            self._f.close()
            self._f = None
        if self.segs and self._seg_count < _SEG_RECORDS:
            self._f = open(self._seg_path(self.segs[-1]), "ab")
            return
        self._f = open(self._seg_path(seq), "ab")
        self.segs.append(seq)
        self._seg_count, self._seg_size = 0, 0

    def _repair(self):
        """After a failed write: close, cut whatever part of the record reached the file."""
        try:
            if self._f is not None:
                self._f.close()
        except OSError:
            pass
        self._f = None
        try:
            self._recover_tail()
        except OSError:
            pass

    # -- reading ----------------------------------------------------------------------------
    def rows(self, after, limit):
        """Up to ``limit`` (seq, body dict) pairs with seq > ``after``, in seq order, as a list."""
        return list(self.iter_rows(after, limit))

    def iter_rows(self, after, limit):
        """Yield up to ``limit`` (seq, body dict) pairs with seq > ``after`` one at a time, so that
        only one decoded body is on the heap. Sequential reads resume at a cursor, not at the start
        of the segment."""
        seq = max(after, self.acked) + 1
        if seq > self.last_seq or not self.segs or limit <= 0:
            return
        i = len(self.segs) - 1
        while i > 0 and self.segs[i] > seq:
            i -= 1
        n = 0
        while i < len(self.segs) and n < limit:
            first = self.segs[i]
            cur = self._cursor
            offset, at = 0, first
            if cur is not None and cur[0] == first and cur[2] <= seq:
                offset, at = cur[1], cur[2]
            with open(self._seg_path(first), "rb") as f:
                if offset:
                    f.seek(offset)
                while n < limit and at <= self.last_seq:
                    rec = read_record(f)
                    if rec is None:
                        break
                    if rec[0] != at:
                        raise JournalError("journal segment %d is corrupt at seq %d" % (first, at))
                    offset += rec[2]
                    at += 1
                    self._cursor = (first, offset, at)
                    if rec[0] >= seq:
                        n += 1
                        yield rec[0], json.loads(rec[1])
                    rec = None
            i += 1

    # -- acks -------------------------------------------------------------------------------
    def ack(self, upto):
        """Record the hub's ack; delete segments it fully covers. False if it moved nothing."""
        if upto <= self.acked:
            return False
        if upto > self.last_seq:
            raise JournalError("ack upto %d is beyond last_seq %d" % (upto, self.last_seq))
        self.acked = upto
        self._write_meta()
        self._compact()
        return True

    def _compact(self):
        while len(self.segs) > 1 and self.segs[1] - 1 <= self.acked:
            self._drop(self.segs[0])
        if self.segs and self.acked >= self.last_seq and self._seg_count >= _SEG_RECORDS:
            if self._f is not None:
                self._f.close()
                self._f = None
            self._drop(self.segs[0])
            self._seg_count, self._seg_size = 0, 0

    def _drop(self, first):
        os.remove(self._seg_path(first))
        self.segs.remove(first)
        if self._cursor is not None and self._cursor[0] == first:
            self._cursor = None

    @property
    def pending(self):
        return self.last_seq - self.acked

    def summary(self):
        return {"device": self.device, "epoch": self.epoch, "last_seq": self.last_seq,
                "acked": self.acked, "pending": self.pending}

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


def hexlify(raw):
    return binascii.hexlify(raw).decode()
