"""Frames prepared for the model on the GPU that decoded them, and fed to it in place."""
