"""The hub's configuration taken up by the rules (SPEC section 13), one file for both terminals.

A ``config`` command carries a version and the device's whole effective settings (hall, window
and device layers merged by the hub: protocol/settings.py). :func:`configure` checks it in the
small form both interpreters run and holds it as :attr:`core.Rules.pending`; :func:`settle` puts it
in force once no invitation and no reason wait is live (rules never change in the middle of a
rating), over the terminal's own ``[timing]``; :func:`keys` narrows the panel's keys to what it
offers. The CPython terminal imports it as ``terminal.conf`` (after checking the command in full
with protocol/settings.py); the firmware loads it as ``conf`` only while it handles a
configuration and drops it after, so its code does not sit in the 64 KB heap (docs/micro.md,
"Limits and figures"). Written in the subset MicroPython runs, like ``core.py``.
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


def configure(rules: object, cmd: dict) -> tuple[str | None, str | None]:
    """A ``config`` command for ``rules`` (a core.Rules): (field, None) refused for that field and
    nothing changed; (None, None) a copy of one in force already; (None, "config") held as
    ``rules.pending`` until :func:`settle`.

    The small form of protocol.settings: unknown keys and values out of range are refused.
    ``opening`` is only carried (a terminal has no time zone): 11 characters, start before end;
    ``reasons`` are distinct texts (a reason the panel has no key for counts for nothing)."""
    v, s = cmd.get("version"), cmd.get("settings")
    if type(v) is not int or v < 1:
        return "version", None
    if not isinstance(s, dict):
        return "settings", None
    for k in s:
        v = s[k]
        if k == "reasons":
            n = isinstance(v, list) and len(v) < 7
            for r in v if n else ():
                n = n and isinstance(r, str) and v.count(r) == 1
        elif k == "layout":
            n = v == 3 or v == 5
        elif k == "opening":
            n = isinstance(v, str) and len(v) == 11 and v[5] == "-" and v[:5] < v[6:]
        else:  # seconds: invite_s and reason_s more than 0, lockout_s from 0, each to its ceiling
            n = type(v) in (int, float) and (v > 0 or k == "lockout_s") and v >= 0
            top = {"invite_s": _INVITE_MAX_S, "reason_s": _REASON_MAX_S, "lockout_s": _LOCKOUT_MAX_S}
            n = n and v <= top.get(k, -1)
        if not n:
            return k, None
    v = cmd["version"]
    if v <= rules.conf[0]:  # type: ignore[attr-defined]
        return None, None
    rules.pending = (v, s)  # type: ignore[attr-defined]
    return None, "config"


def settle(rules: object, cfg: dict) -> int:
    """Put ``rules.pending`` in force unless an invitation or a reason wait is live: its times over
    ``cfg``, the terminal's ``[timing]`` (seconds by key). Its version once in force, else 0."""
    p = rules.pending  # type: ignore[attr-defined]
    if p is None or rules.invitation is not None or rules.awaiting_reason is not None:  # type: ignore[attr-defined]
        return 0
    rules.pending, rules.conf = None, p  # type: ignore[attr-defined]
    s = p[1]
    # terminal.toml's defaults where ``cfg`` lacks a key (a hand-made config.json)
    rules.lockout_ms = int(s.get("lockout_s", cfg.get("lockout_s", 10)) * 1000)  # type: ignore[attr-defined]
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


def board(self: object, cmd: dict | None) -> str | None:
    """The firmware's side, a method of main.Firmware kept here (``self``): a ``config`` command
    ``cmd`` from the hub, or (None) the pending one now that no rating is under way. Checked and
    put in force as above, kept in config.json (``{"version", "settings", "refused"}``, written
    as a rekey writes it) and reported in the next state. A refused one changes nothing but the
    report: the field at fault, or None."""
    r, cfg = self.rules, self.cfg  # type: ignore[attr-defined]
    c = cfg.get("config") or {"version": 0}
    problem = configure(r, cmd)[0] if cmd else None
    if problem:
        self.board.log("refused a configuration from the hub: bad " + problem)  # type: ignore[attr-defined]
        v = cmd.get("version")  # type: ignore[union-attr]
        c["refused"] = {"version": min(max(v, 0), 2147483647) if type(v) is int else 0,
                        "reason": problem + " is not valid"}  # fmt: skip
    elif settle(r, cfg.get("timing", {})):
        keys(r, self.board.levels, self.board.reasons, cfg.get("reasons", ()))  # type: ignore[attr-defined]
        self.board.log("configuration from the hub in force: " + str(r.conf[0]))  # type: ignore[attr-defined]
        if c["version"] == r.conf[0]:
            return None  # the one config.json holds, in force again after a restart
        c["version"], c["settings"] = r.conf
    else:
        return None  # a copy of the one in force, or one waiting for the rating under way
    cfg["config"], up = c, self.uplink  # type: ignore[attr-defined]
    from json import dump

    from journal import replace

    with open(up.file + ".tmp", "w") as f:  # as uplink.Uplink.rekey writes it: the old file or the new
        dump(cfg, f)
        f.flush()
    replace(up.file + ".tmp", up.file)
    up.next_state = None
    return problem
