"""Settings read from the environment: the base every package's model extends, and the
settings several processes share (log level, the Prometheus multiprocess folder, gunicorn's).

Imports nothing of ours, so every package (``auth`` included) and gunicorn.conf.py can use it.
"""
