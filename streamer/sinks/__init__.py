"""Where a pipeline's events go: Redis Streams (with a spool for outages), and consumers
in the same process."""
