"""``python -m xpevents.relay``: the same as ``xpevents relay``."""

from __future__ import annotations

from xpevents.relay.cli import relay_command

if __name__ == "__main__":
    relay_command(prog_name="xpevents relay")
