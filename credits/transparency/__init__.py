"""The transparency log: an RFC 9162 Merkle tree stored as C2SP tiles, with
checkpoints in C2SP signed notes. See docs/transparency.md.

The modules merkle, tiles, stores, note and checkpoint import only the standard
library and ``cryptography``: the standalone verifier imports them.
"""
