"""``levered api-keys create --scopes … --key-only``: a script gets just the secret, scoped."""

from __future__ import annotations

from tests.cli.conftest import levered
from tests.cli.test_cli_basics import _keyed
from tests.conftest import Org


async def test_key_only_prints_just_a_scoped_secret(cli_env: dict[str, str], org: Org) -> None:
    env = _keyed(cli_env, org)
    created = await levered(
        "api-keys", "create", "--label", "web", "--scopes", "ingest,serve", "--key-only", env=env
    )
    assert created.code == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("lvk_") and "\n" not in secret
    listed = await levered("api-keys", "list", "--json", env=env)
    keys = {k["prefix"]: k for k in listed.json()["api_keys"]}
    assert keys[secret[:12]]["scopes"] == ["ingest", "serve"]
    refused = await levered("api-keys", "list", env=cli_env | {"LEVERED_API_KEY": secret})
    assert refused.code != 0 and "'read' scope" in refused.stderr


async def test_an_unknown_scope_is_a_usage_error_naming_the_field(
    cli_env: dict[str, str], org: Org
) -> None:
    env = _keyed(cli_env, org)
    created = await levered("api-keys", "create", "--label", "x", "--scopes", "write", env=env)
    assert created.code != 0 and "scopes" in created.stderr
