"""Quarantined mail. Filled in by the quarantine work: see the README's roadmap."""
