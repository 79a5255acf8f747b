"""The HTTP API v1: thin views over the services, errors mapped in one place."""
