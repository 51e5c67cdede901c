"""Reading a pipeline's events back from Redis, in any process."""
