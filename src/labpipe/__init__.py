"""labpipe: the LAB alignment method as a Kubeflow pipeline.

The library does the work; components/ and pipelines/ only wire it into KFP. Nothing under
src/labpipe imports kfp (tests/unit/test_no_kfp_in_library.py enforces it).
"""

__version__ = "0.1.0"
