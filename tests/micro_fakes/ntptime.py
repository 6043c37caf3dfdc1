"""A fake ``ntptime``: ``settime`` fails until the test sets ``reachable``."""

host = "pool.ntp.org"
timeout = 1
reachable = False
calls = 0


def settime():
    global calls
    calls += 1
    if not reachable:
        raise OSError(110)
