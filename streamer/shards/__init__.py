"""Shards: one pipeline run over many processes (and, with Ray, many machines).

Each shard is a `Pipeline` over a share of the sources, in its own process with its own
model session; a supervisor assigns the sources, restarts a shard that dies, and sums
what the shards did (DESIGN.md section 11).
"""
