"""oracle_import.py: import the shared sam2_oracle.py with the official
source on the path, and give SAM2AutomaticMaskGenerator extra keyword
arguments the oracle has no flag for. Used by make_e2e.py and
make_synthetic.py."""
import os
import sys


def load_oracle(oracle, src, amg_extra):
    """Return the imported oracle module, with every SAM2AutomaticMaskGenerator
    built by it receiving amg_extra (a dict of keyword arguments)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(oracle)))
    import sam2_oracle as so
    so.stub_modules()
    sys.path.insert(0, src)
    so.shim_torch()
    import sam2.automatic_mask_generator as amgmod
    init = amgmod.SAM2AutomaticMaskGenerator.__init__

    def patched_init(self, *a, **k):
        k.update(amg_extra)
        init(self, *a, **k)
    amgmod.SAM2AutomaticMaskGenerator.__init__ = patched_init
    return so
