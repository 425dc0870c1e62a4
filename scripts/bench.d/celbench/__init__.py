"""scripts/bench's driver, one module per concern (see cli.py for the entry).
scripts/bench installs the tools, builds build-bench and runs bench.py, which
calls cli.main."""
