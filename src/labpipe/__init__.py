"""labpipe: the LAB alignment method as a Kubeflow pipeline.

The library does the work; components/ and pipelines/ only wire it into KFP. Nothing under
src/labpipe imports kfp (tests/unit/test_no_kfp_in_library.py enforces it).
"""

__version__ = "0.1.0"


def _configure_network() -> None:
    # One CA bundle for every client (labpipe.net); only reads the environment unless a CA is configured.
    import os

    names = ("LABPIPE_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
             "http_proxy", "https_proxy", "no_proxy")
    if any(os.environ.get(name) for name in names):
        from labpipe import errors, net

        try:
            net.configure()
        except errors.UserError:
            pass  # reported where it matters: the CLI and every TLS client call net again


_configure_network()
