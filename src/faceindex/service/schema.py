"""Catalog migrations owned by the service: API keys, browser sessions and one-time login links.

Only hashes of secrets are stored: an API key, a session token or a login-link token found in a copy
of the catalog cannot be used to log in.
"""

_ROLES = "'admin', 'curator', 'searcher', 'auditor', 'privacy-officer'"

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0100_api_keys",
        f"""
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
            role TEXT NOT NULL CHECK (role IN ({_ROLES})),
            key_hash TEXT NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            last_used_at TEXT
        );
        """,
    ),
    (
        "0101_web_sessions",
        """
        CREATE TABLE web_sessions (
            token_hash TEXT PRIMARY KEY,
            key_id INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX web_sessions_key ON web_sessions(key_id);
        CREATE TABLE login_tokens (
            token_hash TEXT PRIMARY KEY,
            key_id INTEGER NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT
        );
        """,
    ),
]
