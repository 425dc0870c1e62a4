#!/usr/bin/python3
"""One test program of the summary fixture; argv[1] says how it ends."""
import os
import sys
import time

kind = sys.argv[1]
out = sys.stdout
if kind == "tap_pass":
    print("1..2\nok 1 - first\nok 2 - second")
elif kind == "tap_leak":  # every subtest passes, then LeakSanitizer fails the exit
    print("1..2\nok 1 - first\nok 2 - second", flush=True)
    print("==1==ERROR: LeakSanitizer: detected memory leaks", file=sys.stderr)
    sys.exit(23)
elif kind == "tap_abort":  # an ASan abort in the middle of the run
    print("1..3\nok 1 - first", flush=True)
    os.abort()
elif kind == "tap_timeout":
    print("1..2\nok 1 - first", flush=True)
    time.sleep(60)
elif kind == "tap_skip":
    print("1..2\nok 1 - first\nok 2 - needs_ipv6 # SKIP no IPv6 loopback")
elif kind == "plain_pass":
    pass
elif kind == "plain_timeout":
    time.sleep(60)
elif kind == "plain_skip":
    sys.exit(77)
elif kind == "plain_crash":
    os.abort()
else:
    sys.exit(f"case.py: unknown case {kind}")
