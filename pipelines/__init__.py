"""The LAB pipeline (lab_pipeline.py), its compiled IR (lab_pipeline.yaml), and how to run it (runner.py).

Installed as labpipe.pipelines (see setup.py). This package may import kfp; src/labpipe may not.
"""
