"""What every test suite of celerisd shares (tests/integration, attack,
conformance, scaleout): one way to start and stop the daemon, and one set of
HTTP/2 frame and HPACK builders.

    lib.daemon     the binary ($CELERISD, else build/celerisd), free ports,
                   ServerFactory / start(): a daemon on a config file, waited
                   for until its ports accept, stopped by PID
    lib.h2frames   RFC 9113 frame types, flags, error codes and settings; any
                   frame byte for byte; RFC 7541 HPACK by hand

A suite puts tests/ on sys.path in its conftest.py and imports `lib.daemon`,
`lib.h2frames`. Debian's python3-hpack is the only package this needs.
"""
