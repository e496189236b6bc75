"""Enterprise networks: one CA bundle and the standard proxy variables, honoured by every client labpipe uses.

One input: `LABPIPE_CA_BUNDLE`, a PEM file with the private CA(s) of a TLS-inspecting proxy or of internal
services (on a cluster: the `labpipe-ca` secret mounted into every task). The private CAs are *added* to the
public roots (certifi), so public endpoints keep working next to internal ones. When it is unset, a complete
trust store named by the standard `SSL_CERT_FILE` or `REQUESTS_CA_BUNDLE` is passed on to the clients that
read other variables.

`configure()` writes that combined trust store once and points every client at it through the variables each
one reads: httpx (teacher, judge and model endpoints; SSL_CERT_FILE), requests (MLflow; REQUESTS_CA_BUNDLE),
boto3 (S3; AWS_CA_BUNDLE), git (documents and taxonomy clones; GIT_SSL_CAINFO) and the KFP client
(`kfp_client_options()`). Proxies: HTTP_PROXY / HTTPS_PROXY / NO_PROXY (either case) are read by httpx,
requests, boto3 and git themselves; the KFP client gets them from `kfp_client_options()`.
`labpipe` calls `configure()` when the package is imported, so the CLI, every pipeline task and every
subprocess (accelerate, torchrun) inherit it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from labpipe.errors import Problem, UserError

if TYPE_CHECKING:
    import ssl

CA_ENV = "LABPIPE_CA_BUNDLE"
# Where pipeline tasks find the optional `labpipe-ca` secret; a missing file there means "no private CA".
CLUSTER_CA_PATH = "/etc/labpipe/ca/ca.crt"
# Variables pointed at the combined trust store, by the client that reads each.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE")
_MARK = "LABPIPE_TRUST_STORE"  # set once configured: the combined file (so a child process reuses it)


def private_ca() -> str | None:
    """LABPIPE_CA_BUNDLE: the PEM file with private CAs the user gave, or None. A missing file is an error."""
    path = os.environ.get(CA_ENV, "").strip()
    if not path:
        return None
    if not Path(path).is_file():
        if path == CLUSTER_CA_PATH:
            return None  # the optional secret is not mounted: public roots only
        raise UserError(Problem(where=path, rule="ca-bundle", field=CA_ENV,
                                message="the CA bundle file does not exist",
                                fix=f"point {CA_ENV} at a PEM file with your CA certificate(s), or unset it"))
    return path


def _standard_store() -> str | None:
    """A complete trust store the user chose with the standard variables (used as it is)."""
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name, "").strip()
        if value and Path(value).is_file():
            return value
    return None


def trust_store() -> str | None:
    """The PEM file every client should trust, or None for each client's default.

    LABPIPE_CA_BUNDLE: public roots (certifi) plus those private CAs, combined into one file once.
    Else SSL_CERT_FILE / REQUESTS_CA_BUNDLE, as they are (they name a complete trust store).
    """
    marked = os.environ.get(_MARK)
    if marked and Path(marked).is_file():
        return marked
    extra = private_ca()
    if extra is None:
        return _standard_store()
    import ssl

    import certifi

    private = Path(extra).read_bytes()
    try:  # fail here, naming the file, rather than in the first TLS handshake of some client
        ssl.create_default_context(cadata=private.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise UserError(Problem(where=extra, rule="ca-bundle", field=CA_ENV,
                                message=f"not a PEM CA bundle ({exc})",
                                fix="the file must hold '-----BEGIN CERTIFICATE-----' blocks")) from None
    combined = Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + private.rstrip(b"\n") + b"\n"
    digest = hashlib.sha256(combined).hexdigest()[:16]
    cache = Path(os.environ.get("LABPIPE_CACHE") or Path(tempfile.gettempdir()) / "labpipe") / "ca"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only cache location in some pod: a private temp dir will do
        cache = Path(tempfile.mkdtemp(prefix="labpipe-ca-"))
    out = cache / f"trust-{digest}.pem"
    if not out.exists():
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tmp.write_bytes(combined)
        os.replace(tmp, out)
    return str(out)


def _mirror_proxy_variables() -> None:
    """HTTP_PROXY etc. in both cases: curl (git) reads only lowercase http_proxy, a ConfigMap sets uppercase."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        upper, lower = os.environ.get(name), os.environ.get(name.lower())
        if upper and not lower:
            os.environ[name.lower()] = upper
        elif lower and not upper:
            os.environ[name] = lower


def configure() -> str | None:
    """Point every client at the trust store and the proxy (idempotent); returns the store's path, or None.

    A LABPIPE_CA_BUNDLE store overrides each client's variable; a standard-variable store only fills the
    variables the user left unset.
    """
    _mirror_proxy_variables()
    store = trust_store()
    if store is None:
        return None
    override = private_ca() is not None
    for name in (*CA_VARIABLES, "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        if override:
            os.environ[name] = store
        else:
            os.environ.setdefault(name, store)
    if override:
        os.environ[_MARK] = store
    return store


def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """An SSL context for httpx: an explicit bundle, else the configured trust store, else certifi's roots."""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=ca_bundle or trust_store() or certifi.where())


def proxy_for(url: str) -> str | None:
    """The proxy the standard variables give for `url` (None: direct, including NO_PROXY matches)."""
    import urllib.request  # here, not at import: every labpipe process imports this module
    from urllib.parse import urlparse

    parsed = urlparse(url)
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass_environment(parsed.hostname or "", proxies):
        return None
    return proxies.get(parsed.scheme) or None


def kfp_client_options(host: str) -> dict[str, str]:
    """kfp.Client keyword arguments for the trust store and the proxy (its HTTP library reads neither variable)."""
    options = {}
    store = trust_store()
    if store:
        options["ssl_ca_cert"] = store
    proxy = proxy_for(host)
    if proxy:
        options["proxy"] = proxy
    return options
