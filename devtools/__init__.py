"""Development tooling the tests, the benchmarks and ``scripts/`` share: the real servers
they start on loopback (DynamoDB Local, SeaweedFS, moto) and how they launch gunicorn.

Never shipped in the image and never imported by the product packages.
"""
