"""Enterprise networks: one CA bundle and the standard proxy variables, honoured by every client labpipe uses.

One input: `LABPIPE_CA_BUNDLE`, a PEM file (or several, separated by `:`) with the private CA(s) of a
TLS-inspecting proxy or of internal services (on a cluster: the `labpipe-ca` secret and OpenShift AI's
`odh-trusted-ca-bundle` ConfigMap, both optional, mounted into every task and training job). The private CAs are *added* to the
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
# Where they find OpenShift AI's optional `odh-trusted-ca-bundle` ConfigMap (the platform's trusted CAs, injected
# into every project: ca-bundle.crt and odh-ca-bundle.crt, either may be empty or absent).
CLUSTER_TRUSTED_CA_DIR = "/etc/labpipe/odh-ca"
CLUSTER_CA_FILES = (CLUSTER_CA_PATH, f"{CLUSTER_TRUSTED_CA_DIR}/ca-bundle.crt", f"{CLUSTER_TRUSTED_CA_DIR}/odh-ca-bundle.crt")
# Variables pointed at the combined trust store, by the client that reads each.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE")
_MARK = "LABPIPE_TRUST_STORE"  # set once configured: the combined file (so a child process reuses it)


def private_cas() -> list[str]:
    """LABPIPE_CA_BUNDLE: the PEM file(s) with private CAs the user gave (several: separated by os.pathsep).
    A missing file is an error, except the cluster's optional mounts (CLUSTER_CA_FILES), skipped when absent
    or empty."""
    found = []
    for path in (p.strip() for p in os.environ.get(CA_ENV, "").split(os.pathsep)):
        if not path:
            continue
        optional = path in CLUSTER_CA_FILES
        if Path(path).is_file() and (not optional or Path(path).read_bytes().strip()):
            found.append(path)
        elif not optional:
            raise UserError(Problem(where=path, rule="ca-bundle", field=CA_ENV,
                                    message="the CA bundle file does not exist",
                                    fix=f"point {CA_ENV} at a PEM file with your CA certificate(s), or unset it"))
    return found


def private_ca() -> str | None:
    """The private CA file(s) of LABPIPE_CA_BUNDLE that exist (os.pathsep-separated), or None."""
    return os.pathsep.join(private_cas()) or None


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
    extras = private_cas()
    if not extras:
        return _standard_store()
    import ssl

    import certifi

    parts = []
    for extra in extras:
        part = Path(extra).read_bytes()
        try:  # fail here, naming the file, rather than in the first TLS handshake of some client
            ssl.create_default_context(cadata=part.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise UserError(Problem(where=extra, rule="ca-bundle", field=CA_ENV,
                                    message=f"not a PEM CA bundle ({exc})",
                                    fix="the file must hold '-----BEGIN CERTIFICATE-----' blocks")) from None
        parts.append(part.rstrip(b"\n"))
    private = b"\n".join(parts)
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
