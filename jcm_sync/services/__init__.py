"""The use cases: a node and its own log, the log service, the partner agent, Japan's
hub, reconciliation, the verification pool and metrics.

The CLI, the HTTP server, the daemons and the tests all call these; services import the
core, the store and the node-local files, never the network layer or the CLI.
"""
