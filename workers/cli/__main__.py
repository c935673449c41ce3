"""`python -m workers.cli` is `ontime`."""

from workers.cli.main import main

raise SystemExit(main())
