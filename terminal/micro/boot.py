# The boot step (SPEC section 13): MicroPython runs boot.py before main.py (the simulated board
# runs it first, in an interpreter of its own: terminal.micro_host.boot_command). It is no part of a release: updates never replace it. Kept tiny, as every
# name it holds stays in the firmware's string table: the work is in boot_update.py, loaded only when
# update.json asks for a step (a release to download, one to switch to, a trial that did not
# confirm, an interrupted step), after which the board restarts without it.
try:
    with open("update.json") as f:
        f = f.read()
except OSError:
    f = '"phase": "confirmed"'
if '"phase": "trial"' in f or '"phase": "staged"' in f:
    # The switch is done: this boot runs the new firmware, on trial. Or the release is staged:
    # the firmware reports it verified, then asks for the switch.
    with open("update.json.tmp", "w") as t:
        t.write(f.replace('"phase": "trial"', '"phase": "switched"').replace('"phase": "staged"', '"phase": "verified"'))
    import os

    os.rename("update.json.tmp", "update.json")
elif not ('"phase": "confirmed"' in f or '"phase": "failed"' in f or '"phase": "rolled_back"' in f
          or '"phase": "verified"' in f):
    import sys

    __import__("boot_update").run()  # by its string: no name in the string table on other boots
    if sys.platform == "linux":
        sys.exit(75)  # terminal.micro_host.RESET_EXIT: the host starts the firmware again
    import machine

    machine.soft_reset()
