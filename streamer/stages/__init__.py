"""The stages between sources and sinks, each run on its own thread: preprocess, inference
(batched across sources), postprocess (boxes to events)."""
