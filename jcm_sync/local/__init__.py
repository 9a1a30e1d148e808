"""jcm_sync.local"""
