"""Fixtures for the celerisd integration tests.

The daemon binary is $CELERISD, or <repo>/build/celerisd.

    def test_x(celerisd):
        srv = celerisd('''
    routes:
      - path: /a
        static: { body: "A" }
    ''')
        ...  srv.port, srv.url("/a"), srv.pid, srv.stderr_text()

The YAML text may contain {port} (and {port2}, {port3} for more listen
addresses: ask with ports=N); without a `listen:` key, a listen line for
127.0.0.1:{port} is put in front. Only these markers are replaced (plain
string replacement, so YAML flow mappings and {{placeholders}} are untouched).
On teardown the daemon gets SIGTERM (then SIGKILL after 10 s) and must exit 0,
unless the test set srv.expect_exit to another code (or None for "any").
"""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from support import ServerFactory  # noqa: E402


@pytest.fixture
def celerisd(tmp_path):
    """Factory: celerisd(yaml_text, ports=1, host=...) -> running Server."""
    factory = ServerFactory(tmp_path)
    yield factory
    problems = factory.teardown()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(scope="module")
def module_celerisd(tmp_path_factory):
    """The same factory with module lifetime (one daemon shared by many tests)."""
    factory = ServerFactory(tmp_path_factory.mktemp("celerisd"))
    yield factory
    problems = factory.teardown()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(scope="module")
def factory(tmp_path_factory, request):
    """Factory shared by a test file's tests: daemons started through it live
    until the file's last test (its module-scoped `srv` fixtures use it)."""
    f = ServerFactory(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield f
    problems = f.teardown()
    if problems:
        pytest.fail("\n".join(problems))
