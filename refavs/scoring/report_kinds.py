"""The ``kind`` field of every report JSON refavs writes, so that a reader dispatches on it, never guesses.

- :data:`SCORE_KIND`: ``refavs score --json`` and ``refavs eval --json`` over several splits;
- :data:`SPLIT_SCORE_KIND`: the same for one split;
- :data:`DEMO_REPORT_KIND`: the main job's ``report.json`` (``refavs demo``).
"""

SCORE_KIND = "refavs-score"
SPLIT_SCORE_KIND = "refavs-split-score"
DEMO_REPORT_KIND = "refavs-demo-report"
