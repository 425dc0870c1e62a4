"""The example modules as models: hello reads its config with a JSON parser
(escapes, nesting and wrong types are handled, not guessed at), and notes, a
JSON REST resource validated with jansson whose store is a backend service it
calls over TCP or a UNIX socket on the worker's loop (celeris_watch_* and a
timeout from celeris_timer_*), answers over HTTP/1.1 and h2c, maps the
backend's failures (unreachable 502, silent 504) and lets go of the backend
connection when the client leaves."""

import http.client
import json
import os
import pathlib
import socket
import socketserver
import threading
import time

import pytest

from support import BINARY, expect_config_error

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"
SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))


# ---- hello ----

@pytest.mark.parametrize("config,body", [
    # escapes decoded: a text search turned \t into t and \u00e9 into u00e9
    ('{ greeting: "Tab\\there \\u00e9" }', "Tab\there \u00e9, you!\n"),
    ('{ greeting: "Say \\"hi\\"" }', 'Say "hi", you!\n'),
    ("{}", "Hello, you!\n"),
], ids=["escapes", "quotes", "default"])
def test_hello_reads_its_config_as_json(celerisd, config, body):
    srv = celerisd(f"""modules_dir: {MODULES}
routes:
  - path: /greet/:name
    module: {{ name: hello, config: {config} }}
""")
    with srv.client() as c:
        r = c.get("/greet/you")
        assert (r.status, r.body.decode()) == (200, body)


@pytest.mark.parametrize("module,config,words", [
    ("hello", "{ greeting: 3 }", "greeting must be a string"),
    ("hello", '{ greeting: "" }', "greeting must be a string"),
    ("hello", "[1, 2]", "config must be a mapping"),
    # a text search took the nested greeting ("Inner") and let the rest pass
    ("hello", '{ other: { greeting: "Inner" }, greeting: "Outer" }', 'unknown key "other"'),
    # a text search read "16k" as 16 and ignored the misspelt key
    ("echo", '{ chunk: "16k" }', "chunk, an integer"),
    ("echo", "{ chunks: 5 }", "chunks"),
    ("delay", "{ mode: threads }", "mode must be loop or thread"),
    ("delay", "{ ms: 5, mode: loop, treads: 2 }", "treads"),
    ("notes", "{ timeout_ms: 5 }", "backend is required"),
    ("notes", '{ backend: "localhost:80" }', "numeric address"),
])
def test_examples_refuse_what_does_not_fit(tmp_path, module, config, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""listen: "127.0.0.1:1"
modules_dir: {MODULES}
routes:
  - path: /greet/:name
    methods: [GET, POST]
    module: {{ name: {module}, config: {config} }}
""")
    expect_config_error(cfg, 6, None, [words])


# ---- notes and its backend ----

class Backend:
    """The store notes calls: one line of JSON in, one out, per connection.
    mode "silent" reads the request and never answers."""

    def __init__(self, unix_path=None):
        self.notes = {}
        self.next_id = 1
        self.mode = "ok"
        self.calls = 0
        self.closed_early = 0
        self.lock = threading.Lock()
        backend = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline()
                with backend.lock:
                    backend.calls += 1
                if backend.mode == "silent":
                    # wait for notes to hang up (EOF), then count it
                    self.request.settimeout(30)
                    try:
                        if self.request.recv(1) == b"":
                            with backend.lock:
                                backend.closed_early += 1
                    except OSError:
                        pass
                    return
                reply = backend.answer(json.loads(line))
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        if unix_path:
            class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
                daemon_threads = True
            self.server = Server(str(unix_path), Handler)
            self.address = f"unix:{unix_path}"
        else:
            class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
                daemon_threads = True
                allow_reuse_address = True
            self.server = Server(("127.0.0.1", 0), Handler)
            self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, msg):
        with self.lock:
            op = msg["op"]
            if op == "list":
                return {"notes": [self.notes[k] for k in sorted(self.notes)]}
            if op == "create":
                note = dict(msg["note"], id=self.next_id)
                self.notes[self.next_id] = note
                self.next_id += 1
                return {"note": note}
            if msg["id"] not in self.notes:
                return {"error": "not found"}
            if op == "get":
                return {"note": self.notes[msg["id"]]}
            if op == "put":
                self.notes[msg["id"]] = dict(msg["note"], id=msg["id"])
                return {"note": self.notes[msg["id"]]}
            if op == "delete":
                del self.notes[msg["id"]]
                return {"deleted": msg["id"]}
            return {"error": f"unknown op {op}"}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["tcp", "unix"])
def backend(request, tmp_path):
    b = Backend(tmp_path / "notes.sock" if request.param == "unix" else None)
    yield b
    b.close()


def notes_server(celerisd, address, timeout_ms=2000):
    return celerisd(f"""modules_dir: {MODULES}
routes:
  - path: /notes
    methods: [GET, POST]
    module: {{ name: notes, config: {{ backend: "{address}", timeout_ms: {timeout_ms} }} }}
  - path: /notes/:id
    methods: [GET, PUT, DELETE]
    module: {{ name: notes, config: {{ backend: "{address}", timeout_ms: {timeout_ms} }} }}
""")


class H1:
    def __init__(self, srv):
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20 * SCALE)

    def __call__(self, method, path, body=None, ctype="application/json"):
        headers = {"content-type": ctype} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()


class H2:
    def __init__(self, srv):
        self.c = srv.client()

    def __call__(self, method, path, body=None, ctype="application/json"):
        headers = [("content-type", ctype)] if body is not None else []
        r = self.c.request(method, path, headers=headers,
                           body=body.encode() if isinstance(body, str) else (body or b""))
        return r.status, {k: r.header(k) for k in ("location", "content-type")}, r.body


@pytest.mark.parametrize("proto", [H1, H2], ids=["http1.1", "h2c"])
def test_notes_rest_round_trip(celerisd, backend, proto):
    srv = notes_server(celerisd, backend.address)
    call = proto(srv)
    status, headers, body = call("POST", "/notes",
                                 json.dumps({"title": "milk", "tags": ["shop"]}))
    assert status == 201, body
    note = json.loads(body)
    assert note == {"id": 1, "title": "milk", "text": "", "tags": ["shop"]}
    assert headers.get("location") == "/notes/1"
    assert headers.get("content-type") == "application/json"
    status, _, body = call("PUT", "/notes/1", json.dumps({"title": "oat milk", "text": "2 l"}))
    assert (status, json.loads(body)) == (200, {"id": 1, "title": "oat milk", "text": "2 l",
                                                "tags": []})
    status, _, body = call("GET", "/notes/1")
    assert (status, json.loads(body)["title"]) == (200, "oat milk")
    status, _, body = call("GET", "/notes")
    assert status == 200 and [n["id"] for n in json.loads(body)["notes"]] == [1]
    status, _, body = call("DELETE", "/notes/1")
    assert (status, body) == (204, b"")
    status, _, body = call("GET", "/notes/1")
    assert (status, json.loads(body)) == (404, {"error": "no such note"})
    assert call("GET", "/notes/x1")[0] == 404  # not an id: the backend is not asked
    assert backend.calls == 6


@pytest.mark.parametrize("proto", [H1, H2], ids=["http1.1", "h2c"])
@pytest.mark.parametrize("body,ctype,status,words", [
    ('{"title": "a"', "application/json", 400, "not JSON"),
    ('{"title": "a", "title": "b"}', "application/json", 400, "duplicate"),
    ('{"title": "a"}', "text/plain", 415, "application/json"),
    ('["a"]', "application/json", 422, "JSON object"),
    ('{"text": "no title"}', "application/json", 422, "title"),
    ('{"title": ""}', "application/json", 422, "title"),
    ('{"title": "a", "tags": "x"}', "application/json", 422, "tags"),
    ('{"title": "a", "tags": ["ok", 3]}', "application/json", 422, "tags[1]"),
    ('{"title": "a", "owner": "me"}', "application/json", 422, 'unknown field \\"owner\\"'),
], ids=["truncated", "duplicate", "ctype", "array", "no-title", "empty-title", "tags-type",
        "tag-type", "unknown"])
def test_notes_validation(celerisd, proto, body, ctype, status, words):
    b = Backend()
    try:
        srv = notes_server(celerisd, b.address)
        got, headers, text = proto(srv)("POST", "/notes", body, ctype)
        assert got == status, text
        assert headers.get("content-type") == "application/json"
        assert words in text.decode(), text
        assert b.calls == 0  # refused before any backend call
    finally:
        b.close()


@pytest.mark.parametrize("proto", [H1, H2], ids=["http1.1", "h2c"])
def test_notes_backend_failures(celerisd, tmp_path, proto):
    # nobody listens: 502, at once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    srv = notes_server(celerisd, dead)
    status, _, body = proto(srv)("GET", "/notes")
    assert status == 502 and b"unreachable" in body, body
    # a backend that never answers: 504 after timeout_ms, the connection to it closed
    b = Backend()
    b.mode = "silent"
    try:
        srv = notes_server(celerisd, b.address, timeout_ms=200)
        status, _, body = proto(srv)("GET", "/notes/1")
        assert status == 504 and b"200 ms" in body, body
        deadline = time.monotonic() + 10 * SCALE
        while b.closed_early < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b.closed_early == 1
    finally:
        b.close()


def test_notes_client_leaving_hangs_up_on_the_backend(celerisd):
    """Clients that leave mid-call (HTTP/1.1 close, HTTP/2 reset) end the
    backend call at once: notes' on_close closes the socket, long before the
    60 s timeout."""
    b = Backend()
    b.mode = "silent"
    try:
        srv = notes_server(celerisd, b.address, timeout_ms=60000)
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(b"GET /notes HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 10 * SCALE
            while b.calls < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        with srv.client() as c:
            sid = c.send_request("GET", "/notes/7")
            deadline = time.monotonic() + 10 * SCALE
            while b.calls < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            c.reset_stream(sid)
            deadline = time.monotonic() + 10 * SCALE
            while b.closed_early < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert b.closed_early == 2
            b.mode = "ok"
            assert c.get("/notes").status == 200  # the worker serves on
    finally:
        b.close()


# ---- notes' attachments: a body streamed to a file ----

def attach_server(celerisd, address, files):
    return celerisd(f"""modules_dir: {MODULES}
routes:
  - path: /notes
    methods: [GET, POST]
    module: {{ name: notes, config: {{ backend: "{address}" }} }}
  - path: /notes/:id/attachment
    methods: [GET, PUT]
    max_request_body: 64m
    module: {{ name: notes, config: {{ backend: "{address}", attachments: "{files}" }} }}
""")


@pytest.mark.parametrize("proto", [H1, H2], ids=["http1.1", "h2c"])
def test_notes_attachment_streams_to_a_file(celerisd, tmp_path, proto):
    """5 MiB, past the global 1m limit and within the route's 64m, go to a
    file once the backend says the note exists, and come back whole; a note
    that does not exist gets a 404 and no file."""
    files = tmp_path / "files"
    files.mkdir()
    b = Backend()
    try:
        srv = attach_server(celerisd, b.address, files)
        call = proto(srv)
        assert call("POST", "/notes", json.dumps({"title": "with a file"}))[0] == 201
        data = os.urandom(5 * 1024 * 1024 + 7)
        status, _, body = call("PUT", "/notes/1/attachment", data, "application/octet-stream")
        assert (status, json.loads(body)) == (201, {"id": 1, "bytes": len(data)}), body
        assert (files / "1").read_bytes() == data
        status, headers, body = call("GET", "/notes/1/attachment")
        assert status == 200 and body == data
        status, _, body = call("PUT", "/notes/9/attachment", data[:300000], "application/octet-stream")
        assert status == 404, body
        assert call("GET", "/notes/9/attachment")[0] == 404
        assert sorted(p.name for p in files.iterdir()) == ["1"]
    finally:
        b.close()


def quiet_pump(c):
    """Reads what the server sends for up to 50 ms (nothing is fine)."""
    try:
        c.pump(time.monotonic() + 0.05)
    except TimeoutError:
        pass


def test_notes_attachment_cut_short_leaves_nothing(celerisd, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    b = Backend()
    try:
        srv = attach_server(celerisd, b.address, files)
        with srv.client() as c:
            assert c.request("POST", "/notes", headers=[("content-type", "application/json")],
                             body=b'{"title": "t"}').status == 201
            sid = c.send_request("PUT", "/notes/1/attachment", end_stream=False)
            c.send_body(sid, os.urandom(200000), end_stream=False)
            deadline = time.monotonic() + 10 * SCALE
            while not list(files.iterdir()) and time.monotonic() < deadline:
                quiet_pump(c)
            assert [p.name for p in files.iterdir()] == ["1.part"]
            c.reset_stream(sid)
            deadline = time.monotonic() + 10 * SCALE
            while list(files.iterdir()) and time.monotonic() < deadline:
                quiet_pump(c)
            assert list(files.iterdir()) == []
    finally:
        b.close()
