"""The production dbt profile (dbt/profiles.yml, target `trino`) as dbt renders it.

Method, scheme and port follow one switch, TRINO_PASSWORD (from the transformation Secret):
none/http/8080 without it, ldap/https/8443 with it. The profile is rendered by dbt's own profile
code into dbt-trino's credentials, and a Trino client connection is built from them the way
dbt-trino does (no server needed: the client connects lazily). dbt-trino's LDAP credentials
always speak https, so the port must be Trino's HTTPS port when a password is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "dbt" / "profiles.yml"
TRINO_VARS = ("TRINO_HOST", "TRINO_PORT", "TRINO_USER", "TRINO_PASSWORD", "TRINO_HTTP_SCHEME")


def _credentials(monkeypatch, env: dict[str, str]):
    """dbt-trino credentials of the `trino` target, rendered by dbt with `env`."""
    from dbt.config.profile import Profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    for name in TRINO_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    set_invocation_context(os.environ)  # dbt's env_var() reads the invocation's environment
    raw = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    target, data = Profile.render_profile(
        raw["data_platform"], "data_platform", "trino", ProfileRenderer({})
    )
    return Profile._credentials_from_profile(data, "data_platform", target)


def _connect(credentials):
    """A Trino DB-API connection as dbt-trino opens it (nothing is sent until a query)."""
    import trino

    return trino.dbapi.connect(
        host=credentials.host,
        port=credentials.port,
        user=credentials.user,
        http_scheme=credentials.http_scheme.value,
        auth=credentials.trino_auth(),
    )


def test_without_a_password_plain_http_on_8080(monkeypatch):
    creds = _credentials(monkeypatch, {"TRINO_HOST": "trino.lakehouse.svc.cluster.local"})
    assert (creds.method, creds.http_scheme.value, creds.port) == ("none", "http", 8080)
    _connect(creds).close()


def test_with_a_password_ldap_over_https_on_8443(monkeypatch):
    creds = _credentials(
        monkeypatch,
        {"TRINO_USER": "dbt", "TRINO_PASSWORD": "s3cret"},  # pragma: allowlist secret
    )
    assert (creds.method, creds.http_scheme.value, creds.port) == ("ldap", "https", 8443)
    _connect(creds).close()


def test_a_password_is_never_sent_over_http(monkeypatch):
    """Even with TRINO_HTTP_SCHEME=http left over, a password means https."""
    creds = _credentials(
        monkeypatch,
        {"TRINO_PASSWORD": "s3cret", "TRINO_HTTP_SCHEME": "http"},  # pragma: allowlist secret
    )
    assert creds.http_scheme.value == "https"


def test_an_explicit_port_wins(monkeypatch):
    creds = _credentials(
        monkeypatch,
        {"TRINO_PASSWORD": "s3cret", "TRINO_PORT": "443"},  # pragma: allowlist secret
    )
    assert (creds.method, creds.http_scheme.value, creds.port) == ("ldap", "https", 443)


def test_dbt_trino_forces_https_for_ldap(monkeypatch):
    """Why the port follows the password: dbt-trino's LDAP credentials always speak https,
    whatever the profile's http_scheme, so a password with the plain-http port 8080 (what the
    values once set) could never connect."""
    creds = _credentials(
        monkeypatch,
        {"TRINO_PASSWORD": "s3cret", "TRINO_PORT": "8080"},  # pragma: allowlist secret
    )
    assert type(creds).__name__ == "TrinoLdapCredentials"
    assert creds.http_scheme.value == "https", "dbt-trino's own rule"
    assert creds.port == 8080, "an explicit TRINO_PORT is the operator's choice"


def test_the_transformation_values_leave_port_and_scheme_to_the_profile():
    values = yaml.safe_load(
        (REPO / "deploy" / "helm" / "transformation.values.yaml").read_text(encoding="utf-8")
    )
    env = values["deployments"][0]["env"]
    assert "TRINO_PORT" not in env and "TRINO_HTTP_SCHEME" not in env
