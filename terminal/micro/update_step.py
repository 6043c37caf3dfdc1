"""The firmware's part of an update (SPEC section 13), loaded by the main loop only while one is
under way (the string table has no room to spare for its names otherwise: docs/micro.md). The
boot step (``boot.py``, ``boot_update.py``) does the rest, before the firmware loads, with the
whole heap. :func:`step` acts only while no invitation and no reason wait is live:

- ``fw.pending`` is the release of the hub's ``update`` command, which main wrote to
  update-order.json as it came, after the names of config.json (whose MAC key checks its
  signature) and of the CA (for an https:// url): once connected, the record says
  ``downloading`` and the board resets (the state published as it goes down reports it): the boot
  step checks and stages it;
- the record says ``verified`` (staged, every file checked): once connected, ``switching`` and
  reset (the state published as the board goes down reports ``verified``): the boot step switches;
- on trial (``switched``): ``confirmed`` once the hub is reached (its online state over this
  firmware's own link); reset when it is not within ``update_trial_s`` (config.json, 300 s): the
  boot step then goes back to the previous firmware.
"""

import sys
from json import dump, dumps, loads

from journal import replace


def handle(fw, cmd):
    """The hub's ``update`` command, its bytes as they came: written to update-order.json for the
    boot step (after config.json's name, whose MAC key checks the signature, and the CA's, for an
    https:// url); :func:`step` starts it once no rating is under way. Never parsed here: only its
    release name is read (protocol.commands.encode writes ``cmd`` first, then ``release``). None:
    the firmware's command handler answers nothing for it."""
    up, head = fw.uplink, bytes(cmd[:100])
    i = head.find(b'"release":"') + 11
    release = head[i:head.find(b'"', i)].decode() if i > 10 else ""
    if not release or fw.pending is not None and fw.pending is up.update:
        fw.board.log("ignored an update: %s" % ("an update is under way" if release else "no release name"))
        return None
    with open("update-order.json", "w") as f:
        f.write(dumps([up.file, fw.cfg["broker"].get("tls")]))
        f.write("\n")
        f.write(cmd)
    fw.pending = release
    return None


def step(fw):
    r, up = fw.rules, fw.uplink
    if r.invitation is not None or r.awaiting_reason is not None:
        return  # never in the middle of a rating
    # Words made at run time, not written as literals: a literal of up to 10 characters is one
    # more name in the string table, and the firmware is a few names short of its next pool.
    verified, switching, confirmed = "verified switching confirmed".split()
    job, rec = fw.pending, up.update
    if job is not rec or rec["phase"] == verified:
        if not up.client.connected:
            return  # reported before the restart: the state published as the board goes down
        if job is not rec:  # the release of the hub's command, written to update-order.json
            rec = up.update = loads('{"phase": "downloading", "detail": ""}')
            rec["release"] = job
        else:  # written so; the state goes on saying verified (the hub knows no "switching")
            rec = dict(rec)
            rec["phase"] = switching
    elif up.client.connected and up.w.hub_online:
        rec["phase"] = confirmed
    elif fw.clock.mono_ms() < fw.cfg.get("update_trial_s", 300) * 1000:
        return
    else:
        fw.board.log("release %s did not reach the hub: resetting to go back" % rec["release"])
    fw.pending = None
    if rec["phase"] != confirmed:  # the board restarts and sends no more events: the event
        up.out = None  # frame's 3.5 KB go back to a 64 KB heap, for the record and the last states
    with open("update.json.tmp", "w") as f:
        dump(rec, f)
    replace("update.json.tmp", "update.json")
    if rec["phase"] == confirmed:
        fw.board.log("release %s confirmed" % rec["release"])
        up.next_state = None  # reported at once
        del sys.modules["update_step"]
        return
    # Restart (the boot step runs first): a soft reset on a board; on the unix port the exit code
    # the host (terminal.micro_host.RESET_EXIT) starts the interpreter again for. The state first,
    # its PUBACK awaited (2 s at most): the hub sees where the update stands before the board goes.
    c = up.client
    if c.connected:
        up.publish_state(True)
        for _ in range(100):
            c.poll(20)
            if not (c.connected and any(c.inflight)):
                break
    up.close()
    fw.journal.close()
    if sys.platform == "linux":
        sys.exit(75)
    import machine

    machine.soft_reset()
