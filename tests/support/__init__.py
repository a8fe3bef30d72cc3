"""Shared test helpers: a real DNS server and a scriptable SMTP sink, both on loopback."""
