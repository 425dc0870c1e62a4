"""What every test suite of celerisd shares (tests/integration, attack,
conformance, scaleout): one way to start and stop the daemon, and one set of
HTTP/2 frame and HPACK builders.

    lib.daemon     the binary ($CELERISD, else build/celerisd), free ports,
                   ServerFactory / start(): a daemon on a config file, waited
                   for until its ports accept, stopped by PID;
                   expect_config_error(): a config refused at FILE:LINE:COL
    lib.h2load     run_h2load() and h2load_counts(): h2load's summary read,
                   the test failed when it is missing
    lib.h2frames   RFC 9113 frame types, flags, error codes and settings; any
                   frame byte for byte; RFC 7541 HPACK by hand

A suite puts tests/ on sys.path in its conftest.py and imports `lib.daemon`,
`lib.h2frames`, `lib.h2load`. Debian's python3-hpack is the only package this
needs.
"""
