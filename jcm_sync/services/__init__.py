"""jcm_sync.services"""
