"""Execution plane: provider interfaces (ports) and their adapters. Providers execute or advise; the kernel decides.

Which adapter a tenant uses is tenant configuration (e.g. `open_banking_provider`), never the environment's name:
the simulated sandbox adapters are adapters like any other.
"""
