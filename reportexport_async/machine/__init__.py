"""This machine: the clock (injected everywhere, read only here) and durable files (write to
`.part`, fsync, rename)."""
