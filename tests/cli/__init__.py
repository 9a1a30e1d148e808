"""Tests of jcm_sync.cli: argument parsing, exit codes and rendering."""
