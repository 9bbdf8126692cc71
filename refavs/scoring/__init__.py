"""Scoring any method's predictions against the benchmark's ground truth (``refavs score``)."""
