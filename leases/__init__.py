"""MIG leases: the pure decision, the store and its salvage of untrusted files."""
