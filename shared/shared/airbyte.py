"""Airbyte helpers: the platform's settings turned into a dagster-airbyte ``AirbyteWorkspace``.

``dagster-airbyte`` is imported lazily, inside the functions, so ``shared`` does not depend on
it: only the ingestion location (which depends on ``dagster-airbyte``) calls these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.settings import AirbyteSettings, Settings, SettingsError, environment, load_settings

if TYPE_CHECKING:  # pragma: no cover
    from dagster_airbyte import AirbyteWorkspace

#: Prod settings an Airbyte sync does not use. When only they are missing, :func:`settings_for_sync`
#: still returns the Airbyte settings (placeholders stand in for them, marked unusable).
_NOT_NEEDED_FOR_A_SYNC = {
    "ICEBERG_REST_URI": "http://iceberg-rest-catalog.not-configured.invalid",
    "GARAGE_S3_ENDPOINT": "http://garage.not-configured.invalid",
}


def settings_for_sync(
    environ: Mapping[str, str] | None = None, *, home: str | None = None
) -> tuple[Settings, list[str]]:
    """Settings for an Airbyte sync, and the names of missing settings it could do without.

    An Airbyte sync needs only ``AIRBYTE_*``; the Iceberg catalog and Garage are used afterwards,
    best effort, to describe the landed tables. So a prod deployment whose catalog variables are
    not set still syncs; the returned list names what is missing, and callers must not use the
    catalog or object store then. Every value is still read and validated by
    :func:`shared.settings.load_settings`, the one place that reads the environment.
    """
    env = dict(environment(environ))
    try:
        return load_settings(env, home=home), []
    except SettingsError:
        missing = [name for name in _NOT_NEEDED_FOR_A_SYNC if not env.get(name, "").strip()]
        if not missing:
            raise
        patched = {**env, **{name: _NOT_NEEDED_FOR_A_SYNC[name] for name in missing}}
        # Raises again, with its own clear message, if something an Airbyte sync needs is wrong.
        return load_settings(patched, home=home), missing


def workspace_kwargs(airbyte: AirbyteSettings) -> dict[str, Any]:
    """Keyword arguments of ``dagster_airbyte.AirbyteWorkspace`` for a self-managed Airbyte.

    ``AIRBYTE_URL`` is the server root; dagster-airbyte needs the public API (``/api/public/v1``)
    and the configuration API (``/api/v1``) separately. Contains secrets: never log it.
    """
    kwargs: dict[str, Any] = {
        "rest_api_base_url": airbyte.rest_api_base_url,
        "configuration_api_base_url": airbyte.configuration_api_base_url,
        "workspace_id": airbyte.workspace_id,
    }
    # dagster-airbyte refuses both credential kinds at once; client credentials win.
    if airbyte.client_id and airbyte.client_secret:
        kwargs["client_id"] = airbyte.client_id.reveal()
        kwargs["client_secret"] = airbyte.client_secret.reveal()
    elif airbyte.username and airbyte.password:
        kwargs["username"] = airbyte.username.reveal()
        kwargs["password"] = airbyte.password.reveal()
    return kwargs


def airbyte_workspace(
    airbyte: AirbyteSettings,
    workspace_class: type[AirbyteWorkspace] | None = None,
    **overrides: Any,
) -> AirbyteWorkspace:
    """A dagster-airbyte ``AirbyteWorkspace`` (or ``workspace_class``, a subclass) for
    ``airbyte``; ``overrides`` set its other fields (poll interval, retries, timeouts...)."""
    if workspace_class is None:
        try:
            from dagster_airbyte import AirbyteWorkspace as workspace_class
        except ImportError as exc:  # pragma: no cover - depends on the installed packages
            raise ImportError(
                "shared.airbyte needs dagster-airbyte; install the ingestion location's "
                "dependencies (it pins dagster-airbyte)."
            ) from exc
    return workspace_class(**workspace_kwargs(airbyte), **overrides)


def describe(airbyte: AirbyteSettings) -> str:
    """A loggable description of the Airbyte endpoint: URL, workspace and auth kind, no secret."""
    if airbyte.client_id and airbyte.client_secret:
        auth = "client credentials"
    elif airbyte.username and airbyte.password:
        auth = "basic auth"
    else:
        auth = "no auth"
    return f"Airbyte at {airbyte.url} (workspace {airbyte.workspace_id}, {auth})"
