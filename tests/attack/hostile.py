"""Shared by the hostile-peer tests: sizes, the time scale, and what /proc
says about the daemon (memory, CPU time)."""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from lib.daemon import TIME_SCALE  # noqa: E402

# A static body larger than every window and socket buffer involved.
BIG_SIZE = 8 << 20
# Multiplies the time and CPU bounds that depend on the daemon's speed (not the
# configured timeouts): >1 for a sanitizer build ($CELERIS_ATTACK_SCALE).
SCALE = TIME_SCALE


def proc_status(pid, key):
    """A /proc/PID/status value in kB (VmRSS, VmHWM), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid):
    """User + system CPU time of PID so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# TCP states of /proc/net/tcp: 0A is LISTEN; the others are a connection.
TCP_LISTEN = "0A"


def _tcp_states():
    """Socket inode -> (local port, state) for every TCP socket of this netns."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    col = line.split()
                    out[col[9]] = (int(col[1].rsplit(":", 1)[1], 16), col[3])
        except OSError:
            pass
    return out


def proc_fds(pid, port):
    """The daemon's descriptors: (connections, others), where connections
    lists the TCP sockets on PORT that are not listening (as "state inode")
    and others counts every other descriptor (listeners, files, pipes, the
    event loops' own). None when the process is gone."""
    try:
        targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return None
    states = _tcp_states()
    conns, others = [], 0
    for t in targets:
        if t.startswith("socket:["):
            inode = t[8:-1]
            lp, st = states.get(inode, (None, None))
            if lp == port and st != TCP_LISTEN:
                conns.append(f"{st} {inode}")
                continue
        others += 1
    return conns, others
