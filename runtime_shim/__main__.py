"""``python -m runtime_shim`` runs the shim, as the packaged launcher does."""

import sys

from runtime_shim.main import main

sys.exit(main())
