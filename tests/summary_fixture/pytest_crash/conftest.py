import os


def pytest_unconfigure(config):
    """Dies after the JUnit file is written, as a crash in teardown would."""
    os._exit(3)
