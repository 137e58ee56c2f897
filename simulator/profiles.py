"""NVML's MIG GPU-instance profiles for the GPUs the simulator knows (facts of A100 boards).

A profile has two numbers that are easy to confuse: ``index`` is the
``NVML_GPU_INSTANCE_PROFILE_*`` enum value that ``nvmlDeviceGetGpuInstanceProfileInfo`` takes,
``id`` is what ``nvmlGpuInstanceGetInfo`` reports as ``profileId``. Code that maps a MIG device
back to its profile name must go through the profile info, and the simulator keeps them apart
so that a mix-up shows in tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """One GPU-instance profile as ``nvidia-smi mig -lgip`` shows it."""

    name: str  # "1g.10gb", without NVML's "MIG " prefix
    index: int  # NVML_GPU_INSTANCE_PROFILE_* enum value
    id: int  # NVML profile id
    slice_count: int  # compute slices
    instance_count: int  # how many fit on one GPU
    multiprocessor_count: int
    copy_engine_count: int
    decoder_count: int
    encoder_count: int
    jpeg_count: int
    ofa_count: int
    memory_mib: int
    placements: tuple[int, ...]  # allowed memory-slice starts, in the order the driver tries
    placement_size: int  # memory slices occupied


MEMORY_SLICES = 8
"""Memory slices on an A100: placements index these, ``placement_size`` counts them."""

MAX_MIG_DEVICES = 7
"""What ``nvmlDeviceGetMaxMigDeviceCount`` reports for an A100 in MIG mode."""

_ONE = tuple(range(7))

A100_80GB: tuple[Profile, ...] = (
    Profile("1g.10gb", 0, 19, 1, 7, 14, 1, 0, 0, 0, 0, 9728, _ONE, 1),
    Profile("1g.10gb+me", 7, 20, 1, 1, 14, 1, 1, 0, 1, 1, 9728, _ONE, 1),
    Profile("1g.20gb", 9, 15, 1, 4, 14, 1, 1, 0, 0, 0, 19968, (0, 2, 4, 6), 2),
    Profile("2g.20gb", 1, 14, 2, 3, 28, 2, 1, 0, 0, 0, 19968, (0, 2, 4), 2),
    Profile("3g.40gb", 2, 9, 3, 2, 42, 3, 2, 0, 0, 0, 40192, (4, 0), 4),
    Profile("4g.40gb", 3, 5, 4, 1, 56, 4, 2, 0, 0, 0, 40192, (0,), 4),
    Profile("7g.80gb", 4, 0, 7, 1, 98, 7, 5, 0, 1, 1, 81152, (0,), 8),
)

A100_40GB: tuple[Profile, ...] = (
    Profile("1g.5gb", 0, 19, 1, 7, 14, 1, 0, 0, 0, 0, 4864, _ONE, 1),
    Profile("1g.5gb+me", 7, 20, 1, 1, 14, 1, 1, 0, 1, 1, 4864, _ONE, 1),
    Profile("1g.10gb", 9, 15, 1, 4, 14, 1, 1, 0, 0, 0, 9984, (0, 2, 4, 6), 2),
    Profile("2g.10gb", 1, 14, 2, 3, 28, 2, 1, 0, 0, 0, 9984, (0, 2, 4), 2),
    Profile("3g.20gb", 2, 9, 3, 2, 42, 3, 2, 0, 0, 0, 20096, (4, 0), 4),
    Profile("4g.20gb", 3, 5, 4, 1, 56, 4, 2, 0, 0, 0, 20096, (0,), 4),
    Profile("7g.40gb", 4, 0, 7, 1, 98, 7, 5, 0, 1, 1, 40320, (0,), 8),
)

TABLES: dict[str, tuple[Profile, ...]] = {"a100-80gb": A100_80GB, "a100-40gb": A100_40GB}

# GPU-instance ids the driver hands out first for (slices, placement start); a taken one falls
# back to the lowest free id, as the driver does when instances are created in another order.
PREFERRED_GI_IDS: dict[tuple[int, int], int] = {
    (7, 0): 0, (4, 0): 1, (3, 4): 1, (3, 0): 2, (2, 0): 3, (2, 2): 4, (2, 4): 5,
    **{(1, start): 7 + start for start in range(7)},
}
MAX_GI_ID = 14


def default_table(memory_mib: int) -> str:
    """The table of a MIG-capable board by its memory size."""
    return "a100-80gb" if memory_mib > 48 * 1024 else "a100-40gb"


def by_name(table: str) -> dict[str, Profile]:
    """Profiles of ``table`` keyed by name."""
    return {profile.name: profile for profile in TABLES[table]}


def caps_minors(gpu_minor: int, gi: int, ci: int) -> tuple[int, int]:
    """nvidia-caps minors of a MIG instance's access capabilities, as the kernel module numbers
    them (/proc/driver/nvidia-caps/mig-minors: 1 config, 2 monitor, then per GPU 15 GPU
    instances of 9 minors: the GI's access, then its 8 compute instances)."""
    gi_minor = 3 + gpu_minor * 15 * 9 + gi * 9
    return gi_minor, gi_minor + 1 + ci


CONFIG_CAP_MINOR = 1
MONITOR_CAP_MINOR = 2
