"""The math of detections, pure of threads and I/O: boxes, NMS, geometry, tracking, and the
rules that turn tracks into object, zone and line events."""
