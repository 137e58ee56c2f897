"""Word-level rules of a device request, as the NVIDIA Container Toolkit reads them (README
§Device requests and §Where we differ from NVIDIA): comma lists, the special device words,
boolean variables, driver capabilities and the legacy image's CUDA version.

Pure and import-light: the shim runs these for every GPU create.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Optional

from gpu_core.errors import ShimError, one_line

STAGE = "request"
CAP_SYS_ADMIN = "CAP_SYS_ADMIN"

MAX_TOKEN_CHARS = 256
MAX_TOKENS = 1024

CAPABILITIES = frozenset({"compute", "compat32", "graphics", "utility", "video", "display",
                          "ngx"})
DEFAULT_CAPABILITIES = frozenset({"utility", "compute"})

GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
"""What Go's ``strconv.ParseBool`` reads as true; its false words and anything else are false
for the toolkit (it ignores the parse error), so they are for us."""

_HEX_ID = r"[0-9a-f]+(?:-[0-9a-f]+)*"
_INDEX = r"[0-9]{1,9}"
_PROFILE = r"[0-9]{1,2}g\.[0-9]{1,4}gb(?:\+[a-z][a-z0-9]*(?:\.[a-z0-9]+)*)*"
# Patterns are kept as text and matched through re's own cache: each compiles on its first
# use, so a create pays only for the shapes its input has (a fresh process spends a
# fraction of a millisecond per pattern compiled at import).
_TOKEN_FLAGS = re.IGNORECASE | re.ASCII
_TOKEN_KINDS: tuple[tuple[str, str], ...] = (
    ("index", _INDEX),
    ("gpu-uuid", rf"GPU-{_HEX_ID}"),
    ("pci-bus-id", r"[0-9a-f]{1,8}:[0-9a-f]{1,2}:[0-9a-f]{1,2}\.[0-7]"),
    ("mig-uuid", rf"MIG-{_HEX_ID}|MIG-GPU-{_HEX_ID}/{_INDEX}/{_INDEX}"),
    ("mig-index", rf"{_INDEX}:{_INDEX}"),
    ("mig-profile", rf"mig-{_PROFILE}"),
    ("gpu-mig-profile", rf"(?:{_INDEX}|GPU-{_HEX_ID})\.mig-{_PROFILE}"),
)
TOKEN_FORMS = ("an index, GPU-<uuid>, a PCI bus id, MIG-<uuid>, <gpu>:<mig>, mig-<profile>, "
               "<gpu>.mig-<profile> or a CDI name such as nvidia.com/gpu=0")

# golang.org/x/mod/semver, which the toolkit's hook (v1.20) reads CUDA_VERSION with: "v" plus
# MAJOR[.MINOR[.PATCH]] without leading zeros; a pre-release or build only after a full PATCH.
_NUMBER = r"(?:0|[1-9][0-9]*)"
_PRE_IDENT = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = (rf"v?({_NUMBER})(?:\.({_NUMBER})(?:\.{_NUMBER}"
           rf"(?:-{_PRE_IDENT}(?:\.{_PRE_IDENT})*)?"
           r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?")
MAX_VERSION_CHARS = 256
_UINT32_DIGITS = "4294967295"


def shown(value: str, limit: int = 80) -> str:
    """An untrusted value, escaped and bounded, safe to put in a one-line message."""
    return one_line(repr(value)[1:-1], limit)


def is_index(token: str) -> bool:
    """Whether ``token`` is 1 to 9 ASCII digits (``_INDEX``; ``isdigit`` alone would take
    other scripts' digits, which ``isascii`` rules out)."""
    return 0 < len(token) <= 9 and token.isascii() and token.isdigit()


def device_token_kind(token: str) -> Optional[str]:
    """Name the shape of a device token (``index``, ``gpu-uuid``, ``pci-bus-id``, ``mig-uuid``,
    ``mig-index``, ``mig-profile``, ``gpu-mig-profile``), or None for an impossible one."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    if is_index(token):  # _TOKEN_KINDS' first pattern, the common token, without compiling it
        return "index"
    for kind, pattern in _TOKEN_KINDS:
        if re.fullmatch(pattern, token, _TOKEN_FLAGS):
            return kind
    return None


def split_list(value: str, name: str) -> list[str]:
    """Split a comma list as the toolkit does (trim, skip empty items), bounded because the
    value comes from the image."""
    items = [item.strip() for item in value.split(",")]
    items = [item for item in items if item]
    if len(items) > MAX_TOKENS:
        raise ShimError(STAGE, f"{name}: more than {MAX_TOKENS} items")
    for item in items:
        if len(item) > MAX_TOKEN_CHARS:
            raise ShimError(STAGE, f"{name}: item longer than {MAX_TOKEN_CHARS} characters: "
                                   f"{shown(item)}")
    return items


def parse_bool(value: Optional[str]) -> bool:
    """A boolean variable as the toolkit reads it (``strconv.ParseBool``, errors as false)."""
    return value in GO_TRUE


def pick_devices(tokens: Sequence[str], in_order: bool = False
                 ) -> Optional[tuple[str, ...]]:
    """Apply the special words: ``void`` anywhere (or no token) is not a GPU container;
    otherwise the first of ``all``/``none`` wins (``all,none`` is ``all``) and the other tokens
    are dropped unread, as the toolkit does. Words match in any case (README: where we differ).
    Without a special word every token must have a device shape (CDI names are resolved
    before this); None means not a GPU container.

    ``in_order`` (a mount list, which the toolkit hands libnvidia-container as it is): tokens
    before the special word are read too, so a malformed one fails even before ``all``."""
    if not tokens:
        return None
    lowered = [token.lower() for token in tokens]
    if "void" in lowered:
        return None
    for token, word in zip(tokens, lowered):
        if word == "all":
            return ("all",)
        if word == "none":
            return ()
        if in_order and "=" not in token and device_token_kind(token) is None:
            break
    for token in tokens:
        if device_token_kind(token) is None:
            raise ShimError(STAGE, f"unknown device {shown(token)}; expected {TOKEN_FORMS}")
    return tuple(tokens)


def mig_control(value: str, name: str, privileged: bool) -> tuple[str, ...]:
    """``NVIDIA_MIG_CONFIG_DEVICES``/``NVIDIA_MIG_MONITOR_DEVICES`` (``name``): ``("all",)`` or
    ``()``. The toolkit refuses any non-empty value in an unprivileged container rather than
    ignoring it; libnvidia-container then reads the value untrimmed, skips empty items and
    accepts only ``all`` (any case), reading nothing after it."""
    if value == "":
        return ()
    if not privileged:
        raise ShimError(STAGE, f"cannot set {name} in an unprivileged container "
                               f"(needs {CAP_SYS_ADMIN})")
    for item in value.split(","):
        if item == "":
            continue
        if not (item.isascii() and item.lower() == "all"):
            raise ShimError(STAGE, f"{name}: {shown(item)}: only 'all' devices are currently "
                                   "supported")
        return ("all",)
    return ()


def supported_capabilities(value: str) -> frozenset[str]:
    """``requests.supported_driver_capabilities``: ``all`` or a comma list of capability names
    (empty: none); an unknown name is a configuration error, as the toolkit's hook refuses it."""
    if value.strip() == "all":
        return CAPABILITIES
    names = frozenset(item.strip() for item in value.split(",") if item.strip())
    unknown = sorted(names - CAPABILITIES)
    if unknown:
        raise ShimError("config", f"requests.supported_driver_capabilities: unknown capability "
                                  f"{shown(unknown[0])}; expected all or a comma list of "
                                  f"{', '.join(sorted(CAPABILITIES))}")
    return names


def driver_capabilities(value: Optional[str], legacy: bool, supported: frozenset[str]
                        ) -> tuple[frozenset[str], str]:
    """``NVIDIA_DRIVER_CAPABILITIES`` (None: unset) and where the answer came from
    (``env``, ``default``, ``legacy``).

    Unset on a legacy image: every supported capability. Unset or empty otherwise: the default
    ``utility,compute`` within what is supported. A value of only commas or spaces: none.
    ``all`` anywhere: every supported capability. Otherwise each name must be supported.
    """
    if value is None and legacy:
        return supported, "legacy"
    if not value:
        return DEFAULT_CAPABILITIES & supported, "default"
    names = frozenset(item.strip() for item in value.split(",") if item.strip())
    if "all" in names:
        return supported, "env"
    refused = sorted(names - supported)
    if refused:
        allowed = ",".join(sorted(supported)) or "none"
        raise ShimError(STAGE, f"NVIDIA_DRIVER_CAPABILITIES: unsupported capability "
                               f"{shown(refused[0])} (allowed: {allowed})")
    return names, "env"


def _fits(digits: str, limit: str) -> bool:
    """Whether a decimal string is at most ``limit`` without int() on untrusted digits."""
    digits = digits.lstrip("0") or "0"
    return len(digits) < len(limit) or (len(digits) == len(limit) and digits <= limit)


def legacy_cuda_version(value: str) -> str:
    """``major.minor`` of a legacy image's ``CUDA_VERSION`` (``9.0.176`` -> ``9.0``,
    ``v11.6`` -> ``11.6``, ``8`` -> ``8.0``), read as the toolkit does (a semantic version,
    ``09.0`` and ``11.6-rc1`` are not); a value that is not such a version is a one-line error
    naming it."""
    match = re.fullmatch(_SEMVER, value, re.ASCII) if len(value) <= MAX_VERSION_CHARS else None
    if match is None:
        raise ShimError(STAGE, f"CUDA_VERSION: invalid CUDA version {shown(value)} (legacy "
                               "image: expected a version such as 11.6 to require cuda>=11.6)")
    major, minor = match.group(1), match.group(2) or "0"
    if not (_fits(major, _UINT32_DIGITS) and _fits(minor, _UINT32_DIGITS)):
        raise ShimError(STAGE, f"CUDA_VERSION: invalid CUDA version {shown(value)} (major or "
                               "minor version out of range)")
    return f"{major}.{minor}"
