"""The only package that talks to DynamoDB. Keys are always tenant-prefixed (DESIGN.md invariant 10).

Conditional-write failures are translated into domain errors here, so services never see a botocore exception.
"""
