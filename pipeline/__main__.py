"""`python -m pipeline` is the same as the `newsflow` command."""

from pipeline.cli import main

raise SystemExit(main())
