"""What the model sees: annotated frames for the preview page, snapshots and recordings."""
