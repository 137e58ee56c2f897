"""Which named workload policy a container gets.

Annotations and image env are untrusted: they can only *name* one of the configured policies,
never define one.
"""

import itertools
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

from gpu_core.config import Config, Policy
from gpu_core.errors import ShimError, one_line

ANNOTATION = "ai.scheduling.policy"
ENV_VAR = "AI_SCHEDULING_POLICY"


class PolicyChoice(NamedTuple):
    """The policy a container gets, decided once per create (``Context.policy``) and read by
    the policy, cgroup, NUMA and OOM modifiers."""

    policy: Optional[Policy]
    source: str = ""
    """Where the name came from: ``annotation``, ``env``, ``default``; '' when none was named."""
    ignored: str = ""
    """The log line for an unknown name that ``policy.unknown: ignore`` let through; the OOM
    modifier writes it (as ``oom: policy: ignored ...``), the policy modifier does not."""


def env_value(spec: Mapping[str, Any], name: str) -> Optional[str]:
    """The last ``name=`` entry of process.env, as execve would see it."""
    process = spec.get("process")
    env = process.get("env") if isinstance(process, dict) else None
    found: Optional[str] = None
    if isinstance(env, list):
        prefix = name + "="
        try:  # the common answer, "not set", at C speed: four modifiers ask per create
            if not any(map(str.startswith, env, itertools.repeat(prefix))):
                return None
        except TypeError:
            pass  # a non-string entry: the loop below skips it
        for entry in env:
            if isinstance(entry, str) and entry.startswith(prefix):
                found = entry[len(prefix):]
    return found


def requested_name(spec: Mapping[str, Any]) -> tuple[Optional[str], str]:
    """The policy name the container asks for and where it came from (annotation wins)."""
    annotations = spec.get("annotations")
    if isinstance(annotations, dict):
        value = annotations.get(ANNOTATION)
        if isinstance(value, str) and value.strip():
            return value.strip(), "annotation"
    value = env_value(spec, ENV_VAR)
    if value is not None and value.strip():
        return value.strip(), "env"
    return None, ""


def choose(spec: Mapping[str, Any], config: Config, gpu: bool) -> PolicyChoice:
    """The chosen policy (or None), where its name came from, and the note for an ignored
    unknown name. Modifiers ask ``Context.policy`` instead, which calls this once."""
    name, source = requested_name(spec)
    if name is None:
        default = config.policy.default
        if gpu and default:
            name, source = default, "default"
        else:
            return PolicyChoice(None)
    policies = config.policies
    if name in policies:
        return PolicyChoice(policies[name], source)
    shown = one_line(name, 64)
    known = ", ".join(sorted(policies)) or "none"
    if config.policy.unknown == "ignore":
        return PolicyChoice(None, source, f"policy: ignored unknown policy {shown!r} from "
                                          f"{source} (configured: {known})")
    raise ShimError("policy", f"unknown policy {shown!r} from {source}; configured: {known}")
