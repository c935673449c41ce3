"""`ontime aggregate`: per-device keyword events from per-window results (a faust-streaming app)."""
