"""The runc-compatible runtime shim: argv parsing, bundle I/O, the modifier pipeline, exec."""
