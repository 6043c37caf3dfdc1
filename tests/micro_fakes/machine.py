"""A fake ``machine`` module for running ``terminal/micro/board.py`` on the unix port: pins keep
their level, inputs with a pull-up idle high, a test drives them through ``PINS``."""

PINS = {}


class Pin:
    IN, OUT = 1, 3
    PULL_UP, PULL_DOWN = 1, 2

    def __init__(self, pin_id, mode=-1, pull=-1):
        if pin_id in range(6, 12):
            raise ValueError(f"GPIO {pin_id} is wired to the SPI flash")
        self.id, self.mode = pin_id, mode
        self.level = 1 if pull == Pin.PULL_UP else 0
        self.history = []
        PINS[pin_id] = self

    def value(self, v=None):
        if v is None:
            return self.level
        if self.mode != Pin.OUT:
            raise OSError(f"pin {self.id} is an input")
        self.level = v
        self.history.append(v)


class WDT:
    def __init__(self, timeout=5000):
        self.timeout = timeout
        self.fed = 0

    def feed(self):
        self.fed += 1
