"""The register map of a haocha Modbus RTU evaluator panel (docs/panels.md), shared by the driver
and the simulator so that both read the same numbers.

Input registers hold what the panel measures (identification, boot counter, press counters);
coils are the lights the terminal drives; holding registers the buzzer command.
"""

from __future__ import annotations

import enum

VENDOR = 0x4843  #: "HC"
MAP_VERSION = 1
MAX_BUTTONS = 16
WRAP = 0x10000  #: counters are 16-bit and wrap

# -- input registers (function 4) ---------------------------------------------------------------
IR_VENDOR = 0
IR_MODEL = 1
IR_FIRMWARE = 2  #: major << 8 | minor
IR_SERIAL_HI = 3
IR_SERIAL_LO = 4
IR_BUTTONS = 5  #: number of buttons, 1..16
IR_MAP_VERSION = 6
IDENT_COUNT = 7
IR_BOOT = 16  #: boot counter: +1 at every power-up, kept in the panel's FRAM
IR_COUNTERS = 17  #: press counter of button n at IR_COUNTERS + n - 1; 0 at power-up, only grows
IR_PREV_BOOT = IR_COUNTERS + MAX_BUTTONS  #: 33: the boot number whose final counters follow
IR_PREV_COUNTERS = IR_PREV_BOOT + 1  #: 34..49: counters at the end of boot IR_PREV_BOOT (FRAM)
IR_END = IR_PREV_COUNTERS + MAX_BUTTONS  #: 50
SNAPSHOT_COUNT = IR_END - IR_BOOT  #: one read of 16..49 is an atomic snapshot

# -- coils (functions 1, 5, 15) -----------------------------------------------------------------
COIL_READY = 0  #: light behind the rating keys
COIL_REASON = 1  #: light behind the reason keys
COIL_THANKS = 2  #: thank-you light
COIL_COUNT = 3

# -- holding registers (functions 3, 6, 16) -----------------------------------------------------
HR_BEEP_PATTERN = 0
HR_BEEP_SEQ = 1  #: the panel sounds HR_BEEP_PATTERN once each time this register changes
HR_COUNT = 2


class Beep(enum.IntEnum):
    """Buzzer patterns."""

    NONE = 0
    THANKS = 1  #: one short beep: the press is committed
    REFUSED = 2  #: two low beeps: the press was recorded as ignored
