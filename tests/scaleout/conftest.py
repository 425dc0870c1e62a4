"""Fixtures for tests/scaleout: `cluster` gives three running celerisd
backends (PROXY protocol v2 listener plus a direct one each) and an HAProxy in
front with every backend UP; all are stopped by PID at the end."""

import pathlib
import shutil
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

from cluster import HAPROXY, H2LOAD, Backend, HAProxy  # noqa: E402


class Cluster:
    def __init__(self, directory):
        self.backends = [Backend(directory, f"b{i}") for i in range(1, 4)]
        self.haproxy = HAProxy(directory, self.backends)

    def start(self):
        for b in self.backends:
            b.start()
        self.haproxy.start()
        for b in self.backends:
            self.haproxy.wait_status(b.name, "UP")

    def stop(self):
        self.haproxy.stop()
        codes = {b.name: b.stop() for b in self.backends}
        return codes


@pytest.fixture
def cluster(tmp_path):
    if not shutil.which(HAPROXY) and not pathlib.Path(HAPROXY).exists():
        pytest.fail("haproxy is not installed (scripts/deps test installs it)")
    if not H2LOAD:
        pytest.fail("h2load is not installed (nghttp2-client)")
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        codes = c.stop()
    # Every backend still running at the end must stop cleanly on SIGTERM (a
    # sanitizer report or a leak would make the exit code non-zero).
    bad = {name: rc for name, rc in codes.items() if rc not in (0, -9)}
    if bad:
        pytest.fail(f"backends did not exit 0 on SIGTERM: {bad}")
