"""labpipe: the LAB alignment method as a Kubeflow pipeline.

The library does the work; components/ and pipelines/ only wire it into KFP. Nothing under
src/labpipe imports kfp (tests/unit/test_no_kfp_in_library.py enforces it).
"""

__version__ = "0.1.0"


def _configure_network() -> None:
    # One CA bundle for every client (labpipe.net); only reads the environment unless a CA is configured.
    import os

    if os.environ.get("LABPIPE_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE"):
        from labpipe import errors, net

        try:
            net.configure()
        except errors.UserError:
            pass  # reported where it matters: the CLI and every TLS client call net again


_configure_network()
