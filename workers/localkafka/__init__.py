"""localkafka."""
