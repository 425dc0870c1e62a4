#!/usr/bin/python3
"""Writes the seed corpus of fuzz_h2_fields_diff: requests in its input format
(see fuzz_h2_fields_diff.c): a body length, a flags octet, then fields as
length-prefixed name and value, 0xff before the trailers.

    tests/fuzz/make_h2_fields_corpus.py [DIR]  (default: tests/fuzz/corpus/fuzz_h2_fields_diff)
"""
import os
import sys

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"),
        (b":authority", b"example.com")]


def enc(fields, body=0, data=False, trailers=()):
    out = bytes([body, 1 if data else 0])
    for n, v in fields:
        out += bytes([len(n)]) + n + bytes([len(v)]) + v
    if trailers:
        out += b"\xff"
        for n, v in trailers:
            out += bytes([len(n)]) + n + bytes([len(v)]) + v
    return out


def with_(*extra):
    return BASE + list(extra)


SEEDS = {
    "get": enc(BASE),
    "post_length": enc(with_((b"content-length", b"5")), body=5, data=True),
    "post_length_short": enc(with_((b"content-length", b"6")), body=5, data=True),
    "trailers": enc(with_((b"te", b"trailers")), body=3, data=True,
                    trailers=[(b"x-sum", b"abc")]),
    "trailer_pseudo": enc(BASE, data=True, trailers=[(b":path", b"/x")]),
    "connect": enc([(b":method", b"CONNECT"), (b":authority", b"example.com:443")]),
    "connect_path": enc([(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")]),
    "options_star": enc([(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*"),
                         (b"host", b"a")]),
    "relative_path": enc([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"x"),
                          (b":authority", b"a")]),
    "pseudo_after_regular": enc([(b":method", b"GET"), (b"accept", b"*/*"), (b":scheme", b"http"),
                                 (b":path", b"/"), (b":authority", b"a")]),
    "uppercase_name": enc(with_((b"Accept", b"x"))),
    "bad_name_octet": enc(with_((b"x y", b"1"))),
    "value_ctl": enc(with_((b"x-a", b"a\x01b"))),
    "value_ws": enc(with_((b"x-a", b" a"))),
    "value_obs": enc(with_((b"x-a", b"caf\xc3\xa9"))),
    "connection": enc(with_((b"connection", b"close"))),
    "te_gzip": enc(with_((b"te", b"gzip"))),
    "host_only": enc([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/?q=1"),
                      (b"host", b"h")]),
    "two_hosts": enc(with_((b"host", b"a"), (b"host", b"b"))),
    "dup_method": enc(with_((b":method", b"GET"))),
    "protocol": enc(with_((b":protocol", b"websocket"))),
    "empty_name": enc(with_((b"", b"x"))),
    "scheme_odd": enc([(b":method", b"GET"), (b":scheme", b"Web+S"), (b":path", b"x"),
                       (b":authority", b"a")]),
    "authority_bad": enc([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"),
                          (b":authority", b"a b")]),
    "method_bad": enc([(b":method", b"G T"), (b":scheme", b"https"), (b":path", b"/"),
                       (b":authority", b"a")]),
    "priority": enc(with_((b"priority", b"u=1, i"))),
    "length_leading_zeros": enc(with_((b"content-length", b"0000000000000000000005")), body=5,
                                data=True),
    "length_plus": enc(with_((b"content-length", b"+5")), body=5, data=True),
}


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_h2_fields_diff")
    os.makedirs(d, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
