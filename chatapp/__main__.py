"""`python -m chatapp`: see `chatapp.cli`."""

import sys

from chatapp.cli import main

sys.exit(main())
