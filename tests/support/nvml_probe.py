"""The start of a subprocess probe that counts NVML set-ups: lines that wrap
``gpu_core.nvml_lib.Nvml.init`` so ``first_inits`` records each init that sets the driver state
up (the reference count going from 0). Probes append their own work and print the count."""

COUNT_INITS = """
from gpu_core.nvml_lib import Nvml
first_inits = []
real_init = Nvml.init
def counting_init(self, flags=0):
    if self.references == 0:
        first_inits.append(flags)  # an init that sets the driver state up
    real_init(self, flags)
Nvml.init = counting_init
"""
