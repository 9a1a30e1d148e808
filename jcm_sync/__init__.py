"""jcm-sync: signed registry-to-registry synchronisation for the Joint Crediting Mechanism."""

__version__ = "0.1.0"
