"""What an operator sees of a running pipeline: logs (with secrets redacted) and metrics."""
