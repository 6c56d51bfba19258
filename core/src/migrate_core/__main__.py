"""`python -m migrate_core ...` is `migrate ...` (how `export --processes` starts its children)."""

import sys

from .cli import main

sys.exit(main())
