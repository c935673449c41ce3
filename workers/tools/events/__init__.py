"""Streaming keyword events around the aggregator: offline scoring, matching to ground truth, tuning."""
