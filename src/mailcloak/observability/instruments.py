"""Process-local metrics: what one SMTP server or worker process saw (sessions, replies, scan
times, delivery attempts).

`mailcloak smtpd` runs several processes, and the web app that serves /metrics is another one,
so these use prometheus-client's multiprocess mode: each process writes its samples to files
in DATA_DIR/metrics (set up by this package's __init__), and the /metrics view adds up the
files of its node. Everything the database knows (queue, deliveries, quarantine, rejections) is
read from it at scrape time instead (see figures.py), so every node reports the same
cluster-wide figures for those.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SMTP_SESSIONS = Counter("mailcloak_smtp_sessions", "SMTP connections accepted.")
SMTP_SESSIONS_ACTIVE = Gauge("mailcloak_smtp_sessions_active", "SMTP connections open now.",
                             multiprocess_mode="livesum")
SMTP_REPLIES = Counter(
    "mailcloak_smtp_replies",
    "Answers to RCPT and at the end of DATA, by reply code and enhanced status code "
    "(the reason: 5.1.1 unknown alias, 5.7.1 refused, 4.7.1 try later...).",
    ["stage", "code", "status"])
SPAM_SCAN_SECONDS = Histogram(
    "mailcloak_spam_scan_seconds", "Time the spam engine took to score a message.", ["engine"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
DELIVERY_ATTEMPTS = Counter(
    "mailcloak_delivery_attempts", "Delivery attempts by result, per recipient.", ["result"])
