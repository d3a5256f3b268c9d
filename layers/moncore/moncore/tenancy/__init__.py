"""Tenants, their capabilities and their API credentials."""
