def test_good():
    pass


def test_bad():
    assert 1 == 2, "one is not two"
