"""The boot step's work (SPEC section 13), loaded by ``boot.py`` only when an update needs a step
at boot. It runs before the firmware loads, with the whole heap; the board then restarts, so the
firmware never shares the heap or the string table with this code (they have no room to spare:
docs/micro.md, "Limits and figures").

``update.json`` (beside the firmware, written whole: a temp file renamed over it) says where an
update stands. Each step is recorded before the next one starts, and every file moves by a rename
(atomic on littlefs and POSIX), so a power cut at any point leaves a record from which the next
boot finishes the same step: the firmware never loads a mix of two releases.

- ``downloading`` (the firmware took an ``update`` command, wrote it to update-order.json and
  reset): the order is read and removed; the manifest it names (``url`` + ``manifest.json``, at
  most :data:`_MAX_MANIFEST` bytes: the command carries it by reference, so that a running board
  takes the command in) is downloaded, the order's signature checked over the bytes downloaded
  with the board's MAC key, then the manifest parsed and checked (a ``micro`` release of plain module names with a ``main``, each file at most
  :data:`_MAX_FILE` bytes; a copy of the boot step in it is left out), every file downloaded over HTTP
  (HTTPS with the hall's CA) into ``stage/``, its size and SHA-256 checked while it streams; then
  prev/ is emptied -> ``staged`` (boot.py makes it ``verified`` as the firmware starts; the
  firmware reports it and, when no rating is under way, asks for ``switching`` and resets). Anything wrong -> ``failed`` with the reason, ``stage/`` emptied.
  A restart mid-download (no order left) -> ``failed``.
- ``switching``: the running firmware's files move into prev/ -> ``installing``: the staged files
  move in -> ``trial`` (boot.py makes it ``switched`` as the new firmware starts).
- ``switched`` at boot (no confirmation: the new firmware crashed, exited, failed to import, or
  reset itself when it could not reach the hub) -> ``reverting``: its files move out into stage/
  -> ``restoring``: prev/ moves back in -> ``rolled_back``.

The firmware's files are its modules (``*.py``, ``*.mpy``) and ``release.txt`` (the release they
are, written with a staged release). config.json, the CA and certificate files, the journal and the
boot step itself are never touched.
"""

import hashlib
import os
import socket
from binascii import hexlify, unhexlify
from json import dump, loads

from micropython import const

_MAX_FILE = const(65536)
_MAX_FILES = const(24)
_MAX_MANIFEST = const(4096)  # protocol.updates.MAX_MANIFEST_CHARS
_PIECE = const(1024)
_TIMEOUT_S = const(10)
_NAME = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
#: Never part of a release, never moved: the boot step and the files that are not firmware.
KEEP = ("boot", "boot_update", "sim_board", "webrepl_cfg")


def _module(n):
    """True for a firmware file name: ``release.txt``, or a plain module file not in KEEP."""
    if n == "release.txt":
        return True
    if not isinstance(n, str) or not (n[-3:] == ".py" or n[-4:] == ".mpy"):
        return False
    stem = n[: n.rfind(".")]
    return 0 < len(stem) <= 32 and not stem.encode().strip(_NAME) and stem not in KEEP


def _mods(d):
    return [n for n in os.listdir(d or ".") if _module(n)]


def _move(a, b):
    for n in _mods(a):
        os.rename(a + n, b + n)


def _put(r, p):
    r["phase"] = p
    with open("update.json.tmp", "w") as f:
        dump(r, f)
    try:
        os.rename("update.json.tmp", "update.json")
    except OSError:  # FAT cannot rename over a file
        os.remove("update.json")
        os.rename("update.json.tmp", "update.json")


def _empty(d):
    try:
        for n in os.listdir(d):
            os.remove(d + "/" + n)
    except OSError:
        os.mkdir(d)


def signed(order, text):
    """True if the order's ``sig`` is the HMAC-SHA256 of ``text`` (the manifest's bytes) with this
    board's MAC key (in config.json, named by the order's ``file``): ``protocol.updates.board_signature``."""
    with open(order["file"]) as f:
        key = unhexlify(loads(f.read())["key"])
    key += bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(b"haocha-release\n")  # protocol.updates.BOARD_SIG_PREFIX: no event MAC passes for it
    inner.update(text)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    good, sig = hexlify(outer.digest()), order.get("sig")
    if not isinstance(sig, str) or len(sig) != len(good):
        return False
    diff = 0
    for a, b in zip(good, sig.encode()):
        diff |= a ^ b
    return diff == 0


def files_of(order, text):
    """The files ``[[name, sha256, size], ...]`` of the manifest ``text`` (bytes) once it is signed
    for this board and this order's release; ValueError saying why the release is refused."""
    if not signed(order, text):
        raise ValueError("bad signature: the manifest is not signed with this board's key")
    m = loads(text)
    files, release = m.get("files"), order.get("release")
    if m.get("release") != release or m.get("kind") != "micro" or not isinstance(release, str):
        raise ValueError("the manifest is not of this micro release")
    if not 0 < len(release) <= 32 or release.encode().strip(_NAME + b".+-"):
        raise ValueError("bad release name")
    if not isinstance(files, list) or not 0 < len(files) <= _MAX_FILES:
        raise ValueError("expected 1..%d files" % _MAX_FILES)
    stems, kept = [], []
    for e in files:
        if not isinstance(e, list) or len(e) != 3 or e[0] == "release.txt" or not _module(e[0]):
            n = e[0] if isinstance(e, list) and e else e
            if isinstance(n, str) and n[: n.rfind(".")] in KEEP and n[-3:] == ".py":
                continue  # a release's copy of the boot step (or the simulator's board) is left out
            raise ValueError("%s is not a firmware module's file name" % (n,))
        name, sha, size = e
        if not isinstance(sha, str) or len(sha) != 64 or sha.encode().strip(b"0123456789abcdef"):
            raise ValueError("%s: bad sha256" % name)
        if type(size) is not int or not 0 <= size <= _MAX_FILE:
            raise ValueError("%s: %r bytes, over the %d a file may have" % (name, size, _MAX_FILE))
        stems.append(name[: name.rfind(".")])
        kept.append(e)
    if "main" not in stems:
        raise ValueError("no main module")
    if len(set(stems)) != len(stems):
        raise ValueError("a module is listed twice")
    return kept


def _get(url, name, ctx):
    """A socket past the headers of the hub's answer to GET ``url + name`` (HTTPS with ``ctx``),
    and its Content-Length (-1 when it gives none)."""
    https = url[:8] == "https://"
    host, _, path = (url + name)[8 if https else 7:].partition("/")
    host, _, port = host.partition(":")
    s = socket.socket()
    try:
        s.settimeout(_TIMEOUT_S)
        s.connect(socket.getaddrinfo(host, int(port or (443 if https else 80)))[0][-1])
        if https:
            if ctx is None:
                raise ValueError("https needs the hall's CA on the board (ca.der)")
            s = ctx.wrap_socket(s, server_hostname=host)
        s.write(b"GET /%s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
        status = s.readline()
        if b" 200 " not in status:
            raise ValueError("%s: the hub answered %s" % (name, status.strip().decode()[:40] or "nothing"))
        length = -1
        while True:
            line = s.readline().strip().lower()
            if not line:
                return s, length
            if line[:15] == b"content-length:":
                length = int(line[15:])
    except BaseException:
        s.close()
        raise


def manifest(url, ctx):
    """The bytes of ``url + manifest.json``, at most :data:`_MAX_MANIFEST` (not yet trusted)."""
    s, length = _get(url, "manifest.json", ctx)
    text = b""
    try:
        while length <= _MAX_MANIFEST:
            piece = s.read(_MAX_MANIFEST + 1 - len(text))
            if not piece:
                return text
            text += piece
            length = len(text)
    finally:
        s.close()
    raise ValueError("manifest.json: over the %d bytes a manifest may have" % _MAX_MANIFEST)


def fetch(url, name, sha, size, ctx, buf):
    """Download ``url + name`` into stage/, checking size and SHA-256 while it streams."""
    s, length = _get(url, name, ctx)
    try:
        if length >= 0 and length != size:
            raise ValueError("%s: %d bytes served, the manifest says %d" % (name, length, size))
        h, got = hashlib.sha256(), 0
        with open("stage/" + name, "wb") as f:
            while True:
                n = s.readinto(buf)
                if not n:
                    break
                got += n
                if got > size:
                    raise ValueError("%s: larger than the %d bytes of the manifest" % (name, size))
                piece = memoryview(buf)[:n]
                h.update(piece)
                f.write(piece)
    finally:
        s.close()
    if got != size:
        raise ValueError("%s: the download ended after %d of %d bytes" % (name, got, size))
    if hexlify(h.digest()).decode() != sha:
        raise ValueError("%s: sha256 does not match the manifest" % name)


def stage(order):
    """Download the order's manifest and check it, then download its files into stage/ (emptied
    first); then release.txt names the release there."""
    url, tls = order.get("url"), order.get("tls")
    if not isinstance(url, str) or not (url[:7] == "http://" or url[:8] == "https://"):
        raise ValueError("the url is not http:// or https://")
    ctx = None
    if tls:
        import mqtt

        ctx = mqtt._context(tls)
    files = files_of(order, manifest(url, ctx))
    _empty("stage")
    buf = bytearray(_PIECE)
    for name, sha, size in files:
        fetch(url, name, sha, size, ctx, buf)
    with open("stage/release.txt", "w") as f:
        f.write(order["release"])


def _step():
    try:
        with open("update.json") as f:
            r = loads(f.read())
    except (OSError, ValueError):
        try:
            with open("update.json.tmp") as f:  # FAT: a cut between removing and renaming
                r = loads(f.read())
        except (OSError, ValueError):
            return
    p = r.get("phase")
    if p == "downloading":
        try:  # [config.json's path, the TLS files] on its first line, then the command as it came
            with open("update-order.json") as f:
                head, order = f.readline(), f.read()
            os.remove("update-order.json")  # a download that kills the board is not tried again
            order = loads(order)
            order["file"], order["tls"] = loads(head)
        except (OSError, ValueError, TypeError):
            order = None
        try:
            if order is None:
                raise ValueError("a restart interrupted the download")
            stage(order)
            _empty("prev")
            _put(r, "staged")  # boot.py makes it "verified" as the firmware starts: it reports it
            print("log boot: release %s staged and verified" % r["release"])
        except Exception as e:  # whatever the hub or the network did: reported, nothing switched
            _empty("stage")
            r["detail"] = (str(e) or repr(e))[:200]
            _put(r, "failed")
            print("log boot: release %s refused: %s" % (r["release"], r["detail"]))
        return
    if p == "switching":
        _move("", "prev/")
        p = "installing"
        _put(r, p)
    if p == "installing":
        _move("stage/", "")
        _put(r, "trial")
        print("log boot: switched to release %s, on trial until it reaches the hub" % r["release"])
        try:  # on a board: a trial that hangs or drops to the REPL is reset by it, then reverted
            import machine

            machine.WDT(timeout=120000)
        except (ImportError, AttributeError):
            pass
        return
    if p == "switched":
        _empty("stage")
        p = "reverting"
        _put(r, p)
    if p == "reverting":
        _move("", "stage/")
        p = "restoring"
        _put(r, p)
    if p == "restoring":
        _move("prev/", "")
        r["detail"] = r.get("detail") or "not confirmed: the new firmware stopped, failed to start, or did not reach the hub"
        _put(r, "rolled_back")
        print("log boot: release %s rolled back: %s" % (r["release"], r["detail"]))


def run():
    """Take the step the record asks for, if any."""
    try:
        _step()
    except Exception as e:  # a board that cannot finish the step still starts what it has
        print("log boot: update step failed: %r" % e)
