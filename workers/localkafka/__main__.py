"""`python -m workers.localkafka fetch|up|down|status`: the local broker without the `ontime` CLI."""

from workers.localkafka.broker import main

raise SystemExit(main())
