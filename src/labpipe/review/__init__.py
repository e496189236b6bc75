"""Review a taxonomy contribution before it is merged (`labpipe review`, the review pipeline): stage.py."""
