"""``python -m mechsim`` is the ``mechsim`` command."""

from .cli import main

raise SystemExit(main())
