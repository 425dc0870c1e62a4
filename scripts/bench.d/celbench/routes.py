"""What is measured: the reference routes, the --table routes, the servers
and, per --proto, which client drives which servers."""


class Route:
    def __init__(self, name, path, body, ctype, key, status=200):
        self.name, self.path, self.body, self.ctype, self.key = name, path, body, ctype, key
        self.status = status


ROUTES = [
    Route('/bench', '/bench', b'OK', 'text/plain', 'bench'),
    Route('/json', '/json', b'{"message":"Hello, World!"}', 'application/json', 'json'),
    Route('/users/:id/posts/:postId', '/users/123/posts/456',
          b'{"user":"123","post":"456"}', 'application/json', 'users'),
    # celerisd's own: the example hello module (a .so handler), to compare with /json
    Route('/hello/:name (module)', '/hello/bench', b'Hello, bench!\n',
          'text/plain; charset=utf-8', 'hello'),
]
SERVERS = ['celerisd', 'nginx', 'h2o', 'h2o-mruby', 'nghttpd']
# --table N: N literal routes and TABLE_PARAMS param routes under /api/v1/, the
# shape of a big REST API (issue 21). Only celerisd and nginx (20,000 `location =`
# blocks, which it hashes, and regex locations for the params) take a table.
TABLE_PARAMS = 100
TABLE_SERVERS = ['celerisd', 'nginx']


def table_routes(n):
    """The four requests --table measures: the first and last literal route, the
    last param route, and a path no route matches (404)."""
    p = TABLE_PARAMS - 1
    return [Route('first', '/api/v1/resource0/items', b'OK', 'text/plain', 'first'),
            Route('last', f'/api/v1/resource{n - 1}/items', b'OK', 'text/plain', 'last'),
            Route('param', f'/api/v1/param{p}/123', b'{"id":"123"}', 'application/json', 'param'),
            Route('404', '/api/v1/nothere/items', None, None, '404', status=404)]


class Proto:
    def __init__(self, key, title, client, servers):
        self.key, self.title, self.client, self.servers = key, title, client, servers


# What each --proto measures, with which client, against which servers.
PROTOS = {
    'h2c': Proto('h2c', 'HTTP/2 cleartext (prior knowledge)', 'h2load', SERVERS),
    'http1': Proto('http1', 'HTTP/1.1 cleartext', 'wrk',
                   [s for s in SERVERS if s != 'nghttpd']),
    'tls': Proto('tls', 'HTTP/2 over TLS', 'h2load', SERVERS),
}
NO_HTTP1 = {'nghttpd': 'nghttpd speaks only HTTP/2'}
