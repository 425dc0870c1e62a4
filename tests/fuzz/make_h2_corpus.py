#!/usr/bin/python3
"""Writes the seed corpus of fuzz_h2_input: client byte streams, framed with
hyperframe and header blocks encoded with hpack (Debian: python3-hyperframe,
python3-hpack).

Each file is two control bytes (see fuzz_h2_input.c: chunking, then mode) and
the frames a client sends after the connection preface, which the target adds.
Paths name the routes of the target's built-in config.

    tests/fuzz/make_h2_corpus.py [DIR]    (default: tests/fuzz/corpus/fuzz_h2_input)
"""
import os
import sys

from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame,
                              PingFrame, PriorityFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)


class Client:
    def __init__(self):
        self.enc = Encoder()
        self.out = b""

    def raw(self, b):
        self.out += b
        return self

    def frame(self, f):
        return self.raw(f.serialize())

    def settings(self, **kv):
        f = SettingsFrame(0)
        for k, v in kv.items():
            f.settings[getattr(SettingsFrame, k)] = v
        return self.frame(f)

    def settings_ack(self):
        return self.frame(SettingsFrame(0, flags=["ACK"]))

    def headers(self, sid, method, path, extra=(), end_stream=True, split=0):
        hdrs = [(":method", method), (":scheme", "http"), (":authority", "localhost"),
                (":path", path)] + list(extra)
        block = self.enc.encode(hdrs)
        flags = ["END_STREAM"] if end_stream else []
        if not split:
            f = HeadersFrame(sid, flags=flags + ["END_HEADERS"])
            f.data = block
            return self.frame(f)
        f = HeadersFrame(sid, flags=flags)
        f.data = block[:split]
        self.frame(f)
        rest = block[split:]
        while rest:
            c = ContinuationFrame(sid, flags=["END_HEADERS"] if len(rest) <= split else [])
            c.data, rest = rest[:split], rest[split:]
            self.frame(c)
        return self

    def data(self, sid, body, end_stream=True, pad=0):
        f = DataFrame(sid, flags=(["END_STREAM"] if end_stream else []) +
                      (["PADDED"] if pad else []))
        f.data = body
        if pad:
            f.pad_length = pad
        return self.frame(f)


def seeds():
    s = {}

    c = Client().settings().settings_ack()
    s["get_json"] = (0, 0, c.headers(1, "GET", "/json").out)

    c = Client().settings(MAX_CONCURRENT_STREAMS=100, INITIAL_WINDOW_SIZE=65535)
    c.headers(1, "GET", "/users/42/posts/7?q=hello%20world&x=1",
              [("user-agent", "curl/7.88.1"), ("accept", "*/*")])
    c.headers(3, "GET", "/echo/a/b%2Fc?z", [("user-agent", "fuzz \u00e9\t\"q\\"),
                                          ("cookie", "a=1"), ("cookie", "b=2")])
    c.headers(5, "HEAD", "/big")
    c.headers(7, "DELETE", "/json")
    c.headers(9, "GET", "/nope")
    c.headers(11, "GET", "/empty")
    c.headers(13, "GET", "/")
    c.headers(15, "GET", "/metrics")
    c.headers(17, "HEAD", "/status")
    s["get_many_routes"] = (0, 0, c.out)

    c = Client().settings()
    c.headers(1, "POST", "/submit", [("content-type", "text/plain"), ("content-length", "11")],
              end_stream=False)
    c.data(1, b"hello world")
    s["post_body"] = (0, 0, c.out)

    c = Client().settings()
    c.headers(1, "PUT", "/echo/up", [("content-type", "application/json")], end_stream=False)
    c.data(1, b'{"a":', end_stream=False, pad=5)
    c.data(1, b"1}", end_stream=False)
    c.data(1, b"", end_stream=True)
    s["post_padded_chunks"] = (17, 0, c.out)

    c = Client().settings(INITIAL_WINDOW_SIZE=100)
    c.headers(1, "GET", "/big")
    c.headers(3, "GET", "/big")
    c.frame(WindowUpdateFrame(0, window_increment=1000))
    c.frame(WindowUpdateFrame(1, window_increment=2000))
    c.settings(INITIAL_WINDOW_SIZE=65535)
    c.frame(WindowUpdateFrame(3, window_increment=5000))
    s["big_flow_control"] = (9, 0x01, c.out)

    c = Client().settings(HEADER_TABLE_SIZE=0, ENABLE_PUSH=0, MAX_FRAME_SIZE=16384,
                          MAX_HEADER_LIST_SIZE=1000)
    c.frame(PingFrame(0, opaque_data=b"12345678"))
    c.frame(WindowUpdateFrame(0, window_increment=100000))
    c.frame(PriorityFrame(3, depends_on=0, stream_weight=200, exclusive=True))
    c.frame(PriorityFrame(1, depends_on=3, stream_weight=16))
    c.headers(1, "GET", "/json")
    c.frame(PingFrame(0, flags=["ACK"], opaque_data=b"abcdefgh"))
    s["settings_ping_wu_priority"] = (0, 0, c.out)

    c = Client().settings()
    c.headers(1, "POST", "/echo/x", [("content-length", "100")], end_stream=False)
    c.data(1, b"x" * 10, end_stream=False)
    c.frame(RstStreamFrame(1, error_code=8))
    c.headers(3, "GET", "/big")
    c.frame(RstStreamFrame(3, error_code=0))
    c.headers(5, "GET", "/json")
    s["rst_stream"] = (0, 0, c.out)

    c = Client().settings()
    c.headers(1, "GET", "/json")
    c.raw(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00oops")  # DATA on stream 0: PROTOCOL_ERROR
    c.headers(3, "GET", "/json")
    s["bad_data_stream0"] = (0, 0, c.out)

    c = Client().settings()
    c.headers(1, "GET", "/json")
    c.raw(b"\x00\x00\x03\xfa\x00\x00\x00\x00\x00abc")  # an unknown frame type: ignored
    c.raw(b"\x00\x00\x02\x04\x00\x00\x00\x00\x00\x00\x00")  # SETTINGS of 2 bytes: FRAME_SIZE
    s["bad_frames"] = (0, 0, c.out)

    c = Client().settings()
    c.headers(1, "GET", "/users/1/posts/2", [("x-long", "v" * 300)], split=64)
    s["continuation"] = (5, 0, c.out)

    c = Client().settings()
    c.headers(1, "POST", "/submit", [("content-length", "100000")], end_stream=False)
    c.data(1, b"y" * 1000, end_stream=False)
    s["too_large_413"] = (0, 0, c.out)

    c = Client().settings()
    c.headers(1, "GET", "/json", [("x-h%d" % i, "z" * 100) for i in range(30)])
    c.headers(3, "GET", "/json")
    s["header_list_431"] = (0, 0, c.out)

    c = Client().settings()
    for i in range(20):
        c.headers(1 + 2 * i, "GET", "/big" if i % 2 else "/json")
    s["many_streams"] = (0, 0x12, c.out)

    c = Client().settings()
    c.headers(1, "GET", "/big")
    c.headers(3, "POST", "/submit", end_stream=False)
    c.frame(GoAwayFrame(0, last_stream_id=0, error_code=0))
    c.data(3, b"late")
    s["client_goaway"] = (3, 0x10, c.out)

    c = Client().settings()
    c.headers(3, "GET", "/json")
    c.headers(1, "GET", "/json")  # a lower id after a higher one: PROTOCOL_ERROR
    s["stream_id_regress"] = (0, 0, c.out)

    # the second world (mode bit 5): tight limits, custom access log format
    c = Client().settings()
    for i in range(6):
        c.headers(1 + 2 * i, "GET", "/echo/w?i=%d" % i, [("user-agent", "ua \"%d\"" % i),
                                                       ("cookie", "k=%d" % i)])
    c.headers(13, "GET", "/big")
    c.headers(15, "POST", "/submit", [("content-length", "2000")], end_stream=False)
    s["world2_streams"] = (0, 0x20, c.out)

    c = Client().settings(INITIAL_WINDOW_SIZE=300).settings_ack()  # our 1k window applies
    c.headers(1, "POST", "/echo/body", [("content-type", "text/plain")], end_stream=False)
    c.data(1, b"b" * 600, end_stream=False)
    c.data(1, b"c" * 300, end_stream=True)
    c.headers(3, "GET", "/big")
    c.frame(WindowUpdateFrame(3, window_increment=4000))
    s["world2_body_windows"] = (40, 0x22, c.out)

    c = Client().settings()
    c.headers(1, "GET", "/big")
    for _ in range(10):
        c.frame(PriorityFrame(1, depends_on=0, stream_weight=1))
        c.frame(PingFrame(0, opaque_data=b"pingpong"))
    s["world2_glitches"] = (0, 0x21, c.out)

    # a long :path, near a full access log line (8192 bytes) in the json world
    # (tests/fuzz/crashes/fuzz_h2_input-accesslog-json-line-cut is this with 8300)
    c = Client().settings()
    c.headers(1, "GET", "/echo/" + "p" * 7900, [("user-agent", "long")])
    s["long_path"] = (0, 0, c.out)

    s["http1_request"] = (0, 0x80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s["preface_only"] = (1, 0x80, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "fuzz_h2_input")
    os.makedirs(out, exist_ok=True)
    for name, (chunking, mode, body) in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([chunking, mode]) + body)
    print(f"{len(seeds())} seeds in {out}")


if __name__ == "__main__":
    main()
