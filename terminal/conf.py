"""The hub's configuration taken up by the rules (SPEC section 13), one file for both terminals.

A ``config`` command carries a version and the device's whole effective settings (hall, window
and device layers merged by the hub: protocol/settings.py). :func:`handle` checks it in the small
form both interpreters run and holds it as :attr:`core.Rules.pending`; :func:`update` puts it in
force once no invitation and no reason wait is live (rules never change in the middle of a
rating), over the terminal's own ``[timing]``; :func:`keys` narrows the panel's keys to what it
offers. The CPython terminal imports it as ``terminal.conf``, after checking the command in full
with protocol/settings.py. The firmware loads it as ``conf`` only while it takes a configuration
up and drops it after (:func:`board`), so its 2 KB of code do not sit in the 64 KB heap. Written
in the subset MicroPython runs, like ``core.py``, with few names and old ones reused
(``handle``, ``update``, ``store``): the firmware's string table is one name short of its 3.7 KB
cliff (docs/micro.md, "Limits and figures").
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(n: int) -> int:
        return n


#: Upper bounds of the configurable times in seconds (protocol.settings): invite, lockout, reason.
_INVITE_MAX_S = const(604800)
_LOCKOUT_MAX_S = const(3600)
_REASON_MAX_S = const(600)
_VERSION_MAX = const(2147483647)


def handle(rules: object, cmd: dict) -> tuple[str | None, str | None]:
    """A ``config`` command for ``rules`` (a core.Rules): (field, None) refused for that field and
    nothing changed; (None, None) a copy of one in force already; (None, "config") held as
    ``rules.pending`` until :func:`update`.

    The small form of protocol.settings: unknown keys and values out of range are refused.
    ``opening`` is only carried (a terminal has no time zone): 11 characters, start before end;
    ``reasons`` are distinct texts (a reason the panel has no key for counts for nothing)."""
    v, s = cmd.get("version"), cmd.get("settings")
    if type(v) is not int or not 0 < v <= _VERSION_MAX:
        return "version", None
    if not isinstance(s, dict):
        return "settings", None
    for k in s:
        v = s[k]
        if " " + k + " " not in " invite_s lockout_s reason_s reasons layout opening ":
            return k, None  # unknown (looked up in one long string: no names for the firmware's table)
        if k == "reasons":
            n = isinstance(v, list) and len(v) < 7
            for r in v if n else ():
                n = n and isinstance(r, str) and v.count(r) == 1
        elif k == "layout":
            n = v == 3 or v == 5
        elif len(k) == 7:  # opening (reasons, the other of 7 letters, is above)
            n = isinstance(v, str) and len(v) == 11 and v[5] == "-" and v[:5] < v[6:]
        else:  # seconds: invite_s and reason_s more than 0, lockout_s from 0, each to its ceiling
            n = type(v) in (int, float) and (v > 0 or k == "lockout_s") and v >= 0
            n = n and v <= (_INVITE_MAX_S if k == "invite_s" else _REASON_MAX_S if k == "reason_s" else _LOCKOUT_MAX_S)
        if not n:
            return k, None
    v = cmd["version"]
    if v <= rules.conf[0]:  # type: ignore[attr-defined]
        return None, None
    rules.pending = (v, s)  # type: ignore[attr-defined]
    return None, cmd.get("cmd")  # "config" (not spelled here: the firmware's string table is full)


def update(rules: object, cfg: dict) -> int:
    """Put ``rules.pending`` in force unless an invitation or a reason wait is live: its times over
    ``cfg``, the terminal's ``[timing]`` (seconds by key). Its version once in force, else 0."""
    p = rules.pending  # type: ignore[attr-defined]
    if p is None or rules.invitation is not None or rules.awaiting_reason is not None:  # type: ignore[attr-defined]
        return 0
    rules.pending, rules.conf = None, p  # type: ignore[attr-defined]
    s = p[1]
    # terminal.toml's defaults where ``cfg`` lacks a key (a hand-made config.json)
    v = rules.lockout_ms  # type: ignore[attr-defined]
    rules.lockout_ms = int(s.get("lockout_s", cfg.get("lockout_s", 10)) * 1000)  # type: ignore[attr-defined]
    if rules.lockout_until:  # type: ignore[attr-defined]
        rules.lockout_until += rules.lockout_ms - v  # type: ignore[attr-defined]  # a lockout under way: the new length
    rules.invite_ms = int(s.get("invite_s", cfg.get("invite_s", 60)) * 1000)  # type: ignore[attr-defined]
    rules.reason_ms = int(s.get("reason_s", cfg.get("reason_s", 20)) * 1000)  # type: ignore[attr-defined]
    return int(p[0])


def keys(rules: object, levels: object, reasons: object, cfg: object) -> None:
    """Set the keys that count for ``rules``: the panel's ``levels`` and ``reasons`` keys as the
    configuration in force narrows them (``layout`` 3: no very_… levels; its ``reasons``, else
    the terminal's own, ``cfg``)."""
    s = rules.conf[1]  # type: ignore[attr-defined]
    three, cfg = s.get("layout") == 3, s.get("reasons", cfg)
    a, b = [], []
    for k in levels:  # type: ignore[attr-defined]
        if not (three and k[0] == "v"):  # very_satisfied, very_dissatisfied
            a.append(k)
    for k in reasons:  # type: ignore[attr-defined]
        if k in cfg:  # type: ignore[operator]
            b.append(k)
    rules.levels, rules.reasons = a, b  # type: ignore[attr-defined]


def board(self: object) -> None:
    """The firmware's side, a method of main.Firmware kept here (``self``), called once no rating
    is under way: the ``config`` command the MQTT callback held in ``rules.pending`` (or, at boot,
    the one config.json keeps) checked and put in force as above, kept in config.json (key
    ``conf``: ``{"version", "settings", "refused"}``, written as a rekey writes it) and reported
    in the next state. A refused one changes nothing but the report."""
    r, cfg = self.rules, self.cfg  # type: ignore[attr-defined]
    cmd, r.pending = r.pending, None
    c = cfg.get("conf") or {"version": 0}
    problem = handle(r, cmd)[0]
    if problem:  # the field at fault, cut short: a reason over 200 characters would void the whole state
        problem = problem[:40]
        self.board.log("refused a configuration from the hub: bad " + problem)  # type: ignore[attr-defined]
        c["refused"] = {"version": 0 if problem == "version" else cmd["version"], "reason": problem + " is not valid"}
    elif update(r, cfg.get("timing", {})):
        keys(r, self.board.levels, self.board.reasons, cfg.get("reasons", ()))  # type: ignore[attr-defined]
        self.board.log("configuration from the hub in force: " + str(r.conf[0]))  # type: ignore[attr-defined]
        if c["version"] == r.conf[0]:
            return  # the one config.json holds, in force again after a restart
        c["version"], c["settings"] = r.conf
    else:
        return  # a copy of the one in force
    cfg["conf"] = c
    store(self.uplink, cfg)  # type: ignore[attr-defined]


def store(self: object, cfg: dict) -> None:
    """A method of uplink.Uplink kept here (``self``): write ``cfg`` as config.json as its rekey
    does (a temp file renamed over it: a power cut leaves the old file or the new), and have the
    state published at once."""
    from json import dump

    from journal import replace

    with open(self.file + ".tmp", "w") as f:  # type: ignore[attr-defined]
        dump(cfg, f)
        f.flush()
    replace(self.file + ".tmp", self.file)  # type: ignore[attr-defined]
    self.next_state = None  # type: ignore[attr-defined]
