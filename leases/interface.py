"""What the mig-lease modifier needs of a lease store, and what an allocation reports.

Two stores implement ``LeaseStore``: ``leases.store.FileStore``, the node's real store (the
lease directory, its lock, atomic writes), and ``leases.dry_run.DryRunStore``, which reads the
same directory, records the lease a start would take and writes nothing (``gpu-ctk plan``). The
modifier (``runtime_shim.modifiers.mig_lease``) takes its store from the Context, so the shim and
the plan run one decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Optional, Protocol

if TYPE_CHECKING:
    from leases.allocation import Lease

After = Literal["delete", "failed-create", "poststop"]
"""Why a container's lease is released (``leases.release``): the shim's ``delete`` ran the
runtime's, the create that took it failed, or the runtime ran our ``poststop`` hook."""


@dataclass(frozen=True)
class Reclaimed:
    """A stale lease removed (or, in a dry run, that would be), and why it was stale."""

    lease: Lease
    reason: str


@dataclass(frozen=True)
class Allocation:
    """The committed lease and what the allocation cleaned up on its way."""

    lease: Lease
    reclaimed: tuple[Reclaimed, ...] = ()
    removed_temps: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


Decide = Callable[[Mapping[str, "Lease"]], "Lease"]
"""Given the live leases of other containers by id, the lease to commit (or a ShimError)."""


class LeaseStore(Protocol):
    """A place MIG leases are taken from and given back to."""

    @property
    def dry_run(self) -> bool:
        """True when nothing is ever written: what ``allocate`` returns was not committed."""

    def allocate(self, container_id: str, decide: Decide) -> Allocation:
        """Let ``decide`` choose from what live other containers do not hold, and take its
        lease for ``container_id``."""

    def release(self, container_id: str, after: After) -> Optional[Lease]:
        """Give back ``container_id``'s lease as ``after`` allows; the lease released."""
