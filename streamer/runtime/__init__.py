"""What every part of a running pipeline shares: messages, queues, threads, the clock,
deadlines and the run's statistics."""
