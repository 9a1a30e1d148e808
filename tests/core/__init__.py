"""Tests of the pure core (``jcm_sync.core``)."""
