"""The shared domain: the host's GPUs and a container's request (see the README's layout)."""
