"""What a node keeps on its own disk: configuration, key files, alarms, status, the
daemon lock, and the logging setup.

These modules read and write local files; they import only the pure core.
"""
