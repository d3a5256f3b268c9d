"""Embedded compliance: screening, limits, AML rules, cases."""
