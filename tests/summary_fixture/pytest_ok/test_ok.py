import pytest


def test_one():
    pass


def test_two():
    pass


def test_needs_module():
    pytest.skip("needs a kernel module")
