"""Observability: what happened to a request (`outcome`), its one log line with its EMF metrics
(`access_log`, `metrics`), the application's Powertools logger (`logs`), and the redaction of
secrets from anything shown (`redact`). Nothing here has import-time side effects."""
