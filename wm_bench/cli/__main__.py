"""`python -m wm_bench.cli ...`: the same as `wm-bench ...`."""

from __future__ import annotations

import sys

from wm_bench.cli import main

sys.exit(main())
