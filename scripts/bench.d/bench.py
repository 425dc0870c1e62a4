#!/usr/bin/python3
"""Benchmark driver behind scripts/bench (which installs the tools and builds
build-bench first). Runs celerisd and its peers (nginx, h2o, h2o with mruby,
nghttpd) on loopback with their own generated configs in a temp directory,
pinned with taskset, and drives them with h2load (h2c, or HTTP/2 over TLS) or
wrk (HTTP/1.1). Run `scripts/bench -h`. The code is the celbench package beside
this file, one module per concern."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from celbench.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
