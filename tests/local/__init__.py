"""Tests of the node-local files (``jcm_sync.local``)."""
