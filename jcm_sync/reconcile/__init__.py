"""Reconciliation: stages and rules, pure (a snapshot in, discrepancies out)."""
