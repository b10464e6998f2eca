"""`python -m app` is the `nodeloom` command."""

from app.cli import main

raise SystemExit(main())
