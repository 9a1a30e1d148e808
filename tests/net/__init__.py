"""Tests of the network adapters (``jcm_sync.net``)."""
