"""Kubeflow Model Registry: register an approved model where OpenShift AI's dashboard deploys from.

Optional, next to the MLflow registry (which the gate reads): the same model URI (no copy: the registry
stores a reference) and the same provenance as MLflow version tags, as the version's custom properties.
The `model-registry` client talks to the registry's REST API (`/api/model_registry/v1/...`); it reads a
bearer token from LABPIPE_MODEL_REGISTRY_TOKEN, else from the pod's service-account token file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from urllib.parse import urlparse

from labpipe.errors import Problem, UserError

TOKEN_ENV = "LABPIPE_MODEL_REGISTRY_TOKEN"
AUTHOR = "labpipe"
MODEL_FORMAT = ("vLLM", "1")  # what OpenShift AI's vLLM serving runtime declares it serves


def register_version(
    address: str,
    name: str,
    version: str,
    uri: str,
    *,
    properties: Mapping[str, str],
    description: str = "",
    storage_key: str = "",
) -> dict[str, str]:
    """Register `uri` as version `version` of model `name` in the Kubeflow Model Registry at `address`.

    `address` is the registry's REST URL (http(s)://host[:port]). Returns {registered_model_id,
    model_version_id, model_artifact_id, version}. A version name already taken is a UserError.
    """
    from model_registry import ModelRegistry
    from model_registry.exceptions import StoreError

    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(
            Problem(
                where="model_registry",
                rule="url",
                field="model_registry",
                message=f"{address!r} is not a Model Registry URL",
                fix="pass the registry's REST address, e.g. https://model-registry.example:443",
            )
        )
    try:
        registry = ModelRegistry(
            f"{parsed.scheme}://{parsed.hostname}",
            parsed.port,
            author=AUTHOR,
            user_token=os.environ.get(TOKEN_ENV) or None,
            async_runner=asyncio.run,
        )
        registry.register_model(
            name,
            uri,
            version=version,
            model_format_name=MODEL_FORMAT[0],
            model_format_version=MODEL_FORMAT[1],
            version_description=description[:5000] or None,
            storage_key=storage_key or None,
            metadata={k: str(v) for k, v in properties.items()},
        )
        model = registry.get_registered_model(name)
        mv = registry.get_model_version(name, version)
        artifact = registry.get_model_artifact(name, version)
    except StoreError as exc:
        raise UserError(
            f"Model Registry {address}: {exc}",
            fix=f"a version name must be new; over https the registry needs a token ({TOKEN_ENV} or the "
            "pod's service account)",
        ) from None
    except UserError:
        raise
    except Exception as exc:  # connection refused, TLS, 401/403 from the generated client
        raise UserError(
            f"Model Registry {address}: {str(exc).splitlines()[0][:300]}",
            fix=f"check the address and the token ({TOKEN_ENV} or the service account's)",
        ) from None
    return {
        "registered_model_id": str(model.id),
        "model_version_id": str(mv.id),
        "model_artifact_id": str(artifact.id),
        "version": version,
    }
