"""Camera health and detection drift (DESIGN.md section 12): whether each camera's picture
and the detector's output still look like they did on a good day.

`picture` measures thumbnails, `conditions` turns measures into raised and cleared
conditions, `camera` watches one source's picture, `drift` one source's detections,
`profiles` keeps the references on disk, `settings` makes it all from `health:`.
"""
