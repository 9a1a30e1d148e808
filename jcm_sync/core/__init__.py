"""jcm_sync.core"""
