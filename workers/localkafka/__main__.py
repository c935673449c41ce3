"""`python -m workers.localkafka fetch|up|down|status|logs`: the local broker without the `ontime` CLI."""

from workers.localkafka.cli import main

raise SystemExit(main())
