"""Sync client (hub side) and the cloud twin service that endocrinologists use."""
