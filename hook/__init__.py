"""The OCI hook side: request model, requirements, discovery, readiness, retry, entry point."""
