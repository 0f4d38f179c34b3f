"""``python -m aioposthog`` runs the ``aioposthog`` command."""

import sys

from ._cli import main

sys.exit(main())
