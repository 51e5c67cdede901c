"""Video sources: opening files, streams and devices, decoding them, and their timing."""
