"""KFP components: one thin @dsl.component per LAB stage, each a call into the labpipe library.

Installed as labpipe.components (see setup.py).
"""
