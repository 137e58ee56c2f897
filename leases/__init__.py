"""MIG leases: the pure decision (``allocation``), the store interface (``interface``) with the
node's real store (``store``, over ``files``, ``lock``, ``write``, ``host``, ``faults``) and a dry
run (``dry_run``), the one release (``release``), and the salvage of untrusted files
(``salvage``)."""
