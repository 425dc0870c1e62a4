"""h2load runs and the counts of its summary, for every test suite.

    counts, out = run_h2load("-n", "2000", "-c", "4", srv.url("/r"))
    counts["succeeded"], counts["failed"], counts["2xx"], counts["4xx"] ...
    counts = h2load_counts(text)             # the same counts from output at hand

Both fail the test when the output lacks the `requests:` or the
`status codes:` line (h2load could not run, or printed something else): a
missing summary never reads as zero failures.
"""

import re
import subprocess

import pytest

REQUESTS = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
STATUS_CODES = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
REQUEST_KEYS = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
STATUS_KEYS = ("2xx", "3xx", "4xx", "5xx")


def h2load_counts(out):
    """The counts of h2load's summary in OUT, by the names REQUEST_KEYS and
    STATUS_KEYS (ints). Fails the test when either line is missing."""
    r, s = REQUESTS.search(out), STATUS_CODES.search(out)
    if not (r and s):
        pytest.fail(f"h2load's output lacks its `requests:` or `status codes:` line:\n{out}")
    return dict(zip(REQUEST_KEYS + STATUS_KEYS, map(int, r.groups() + s.groups())))


def run_h2load(*args, timeout=120):
    """Runs `h2load ARGS` (no stdin); returns (counts, its stdout and stderr)."""
    p = subprocess.run(["h2load", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    return h2load_counts(out), out
