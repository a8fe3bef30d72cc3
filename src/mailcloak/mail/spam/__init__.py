"""Spam detection: one verdict interface, several engines (builtin, rspamd, spamassassin)."""
