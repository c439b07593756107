"""The cloud twin service: ingest of hub envelopes, encrypted storage, accounts, consent and audit."""
