"""``python -I -m hook prestart``: the hook entry the simulated host (and a venv install) uses."""

from __future__ import annotations

import sys

from hook.main import main

sys.exit(main())
