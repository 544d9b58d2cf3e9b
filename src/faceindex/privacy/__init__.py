"""Privacy policy over the store: audit log, consent, erasure, opt-out, retention, access reports."""
