"""The pure core: records, envelopes, trust roots, Merkle proofs, checkpoints, wire
messages and the reconciliation rules.

Nothing here touches a file, a socket, a clock it was not handed, or a process; the
layers above (``store``, ``local``, ``services``, ``net``, ``cli``) do, and the import
contract in ``pyproject.toml`` keeps it so.
"""
