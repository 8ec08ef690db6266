"""Prefect tasks: thin wrappers over nyceo stage functions. They pass paths and keys, never arrays."""
