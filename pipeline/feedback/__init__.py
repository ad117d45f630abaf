"""From serving back to training: what the served requests say about the next run.

`skew.py` compares the request log with the served version's training data (`mlops
skew`); `requests_span.py` joins logged requests with labels known later and writes them
as the next span (`mlops span-from-requests`). Reads `records/` (to find a version's run)
and serving's request-log format.
"""
