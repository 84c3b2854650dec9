"""``/api/v2/optimizations`` against the real app and database: create, list, show, edit,
lifecycle, delete, variants, and tenancy."""

from __future__ import annotations

import itertools
import threading
from typing import Any
from uuid import UUID, uuid4

import anyio
import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from levered.db.pool import connect
from levered.services import lifecycle
from tests.conftest import Org

# Marked at collection time (not by conftest's hook, which runs after parametrization) so that
# parametrized async tests keep their parameters.
pytestmark = pytest.mark.anyio

API = "/api/v2/optimizations"
HERO_FACTORS = [
    {
        "name": "headline",
        "levels": ["Ship faster", "Build better", "Scale up", "Go live today", "Start free"],
    },
    {"name": "cta_text", "levels": ["Get started", "Try it free"]},
]
HERO_CONTEXT = [{"name": "country"}, {"name": "device_type"}]

Client = AsyncTestClient[Any]


async def insert_metric(
    conn: asyncpg.Connection, org: Org, name: str = "Sign-ups (7d)", reward_type: str = "bool"
) -> UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO metrics (organization_id, name, sql, anonymous_id_col, timestamp_col, "
        "reward_type) VALUES ($1, $2, 'SELECT anonymous_id, ts FROM signups', 'anonymous_id', "
        "'ts', $3) RETURNING id",
        org.id,
        name,
        reward_type,
    )


@pytest.fixture
async def metric_id(conn: asyncpg.Connection, org: Org) -> UUID:
    return await insert_metric(conn, org)


def hero(metric: UUID, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "Landing Page Hero",
        "design_factors": HERO_FACTORS,
        "reward_metric_id": str(metric),
        "context_factors": HERO_CONTEXT,
        **overrides,
    }


async def create(client: Client, org: Org, metric: UUID, **overrides: Any) -> dict[str, Any]:
    response = await client.post(API, json=hero(metric, **overrides), headers=org.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_status(conn: asyncpg.Connection, optimization_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE optimizations SET status = $2 WHERE id = $1", UUID(optimization_id), status
    )


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "meta"} and body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


# --- the seed example end to end ------------------------------------------------------------


async def test_landing_page_hero_lifecycle(
    client: Client, conn: asyncpg.Connection, org: Org, metric_id: UUID
) -> None:
    created = await create(client, org, metric_id)
    assert created["status"] == "live"
    assert created["meta"]["organization_id"] == str(org.id) and created["meta"]["request_id"]
    assert created["name"] == "Landing Page Hero" and created["model_type"] == "cmab"
    assert created["design_factors"][0] == {
        "name": "headline",
        "dtype": "str",
        "levels": HERO_FACTORS[0]["levels"],
    }
    assert created["context_factors"] == [
        {"name": "country", "dtype": "str", "levels": None},
        {"name": "device_type", "dtype": "str", "levels": None},
    ]
    assert created["variants_count"] == 10 and created["variants_total"] == 10
    assert created["baseline"] == {
        "number": 1,
        "variant_key": "0.0",
        "variant": {"headline": "Ship faster", "cta_text": "Get started"},
    }
    assert created["reward_metric_id"] == str(metric_id)
    assert created["reward_metric"] == {
        "id": str(metric_id),
        "name": "Sign-ups (7d)",
        "reward_type": "bool",
    }
    assert created["attribution"] == {"type": "last_touch", "conversion_window_hours": 24.0}
    assert created["holdout_percentage"] == 10 and created["sticky"] is True
    assert created["excluded_combinations"] == [] and created["summary"] is None
    assert created["model"]["status"] == "untrained"
    assert created["model"]["current_version"] is None
    oid = created["id"]

    listed = (await client.get(API, headers=org.headers)).json()
    assert [o["id"] for o in listed["optimizations"]] == [oid]
    assert listed["meta"]["organization_id"] == str(org.id)
    assert "meta" not in listed["optimizations"][0]

    shown = (await client.get(f"{API}/{oid}", headers=org.headers)).json()
    assert {k: v for k, v in shown.items() if k != "meta"} == {
        k: v for k, v in created.items() if k != "meta"
    }

    paused = await client.patch(f"{API}/{oid}", json={"status": "paused"}, headers=org.headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    resumed = await client.patch(f"{API}/{oid}", json={"status": "live"}, headers=org.headers)
    assert resumed.json()["status"] == "live"
    assert resumed.json()["updated_at"] > created["updated_at"]

    refused = await client.patch(f"{API}/{oid}", json={"status": "draft"}, headers=org.headers)
    err = error(refused, 409, "invalid_transition")
    assert err["message"] == (
        "cannot move a live optimization to draft; allowed: paused, shipped, completed, archived"
    )
    assert err["details"] == {
        "from": "live",
        "to": "draft",
        "allowed": ["paused", "shipped", "completed", "archived"],
    }

    model = await conn.fetchrow(
        "SELECT organization_id, status FROM models WHERE optimization_id = $1", UUID(oid)
    )
    assert model is not None
    assert model["organization_id"] == org.id and model["status"] == "untrained"


async def test_create_draft_and_options(client: Client, org: Org, metric_id: UUID) -> None:
    created = await create(
        client,
        org,
        metric_id,
        draft=True,
        model_type="mab",
        holdout_percentage=0,
        sticky=False,
        attribution={"conversion_window_hours": 1 / 60},
        design_factors=[*HERO_FACTORS, {"name": "badge", "dtype": "bool", "levels": [False, True]}],
        excluded_combinations=[{"headline": "Scale up", "badge": True}],
    )
    assert created["status"] == "draft" and created["model_type"] == "mab"
    assert created["holdout_percentage"] == 0 and created["sticky"] is False
    assert created["attribution"]["conversion_window_hours"] == pytest.approx(1 / 60)
    assert created["variants_total"] == 20 and created["variants_count"] == 18
    assert created["baseline"]["variant"]["badge"] is False
    assert created["excluded_combinations"] == [{"headline": "Scale up", "badge": True}]


# --- validation over HTTP -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"design_factors": []}, "$.design_factors", "at least one design factor"),
        (
            {"design_factors": [HERO_FACTORS[0], {"name": "cta_text", "levels": ["Go"]}]},
            "$.design_factors[1].levels",
            "at least two distinct levels",
        ),
        (
            {"design_factors": [{"name": "h", "levels": ["a", "a"]}]},
            "$.design_factors[0].levels[1]",
            "duplicate level",
        ),
        (
            {"design_factors": [{"name": "h", "dtype": "bool", "levels": [True, "x"]}]},
            "$.design_factors[0].levels",
            "[true, false]",
        ),
        (
            {"design_factors": [{"name": "h", "levels": ["a", True]}]},
            "$.design_factors[0].levels[1]",
            "must be strings",
        ),
        ({"context_factors": [{"name": "headline"}]}, "$.context_factors[0].name", "duplicate"),
        (
            {
                "model_type": "mab",
                "design_factors": [
                    {"name": f"f{i}", "levels": [str(j) for j in range(11)]} for i in range(3)
                ],
            },
            "$.design_factors",
            "1,331 variants",
        ),
        (
            {"excluded_combinations": [{"headline": "Ship faster"}]},
            "$.excluded_combinations[0]",
            "baseline",
        ),
        (
            {"excluded_combinations": [{"colour": "red"}]},
            "$.excluded_combinations[0].colour",
            "not a design factor",
        ),
        (
            {"excluded_combinations": [{"headline": "Nope"}]},
            "$.excluded_combinations[0].headline",
            "not a level",
        ),
        (
            {
                "design_factors": [{"name": "a", "levels": ["x", "y"]}],
                "excluded_combinations": [{"a": "y"}],
            },
            "$.excluded_combinations",
            "at least two",
        ),
        ({"holdout_percentage": 51}, "$.holdout_percentage", "<= 50"),
        (
            {"attribution": {"type": "last_touch", "conversion_window_hours": 0.001}},
            "$.attribution.conversion_window_hours",
            ">=",
        ),
        (
            {"attribution": {"type": "last_touch", "conversion_window_hours": 721}},
            "$.attribution.conversion_window_hours",
            "<= 720",
        ),
        ({"name": ""}, "$.name", "length >= 1"),
        ({"colour": "red"}, "$.colour", "unknown field"),
    ],
)
async def test_create_validation(
    client: Client,
    conn: asyncpg.Connection,
    org: Org,
    metric_id: UUID,
    overrides: dict[str, Any],
    path: str,
    fragment: str,
) -> None:
    response = await client.post(API, json=hero(metric_id, **overrides), headers=org.headers)
    err = error(response, 400, "validation_error")
    assert err["details"][0]["path"] == path, err
    assert fragment in err["details"][0]["message"]
    assert path in err["message"]
    assert await conn.fetchval("SELECT count(*) FROM optimizations") == 0


async def test_missing_required_field_names_it(client: Client, org: Org, metric_id: UUID) -> None:
    body = hero(metric_id)
    del body["reward_metric_id"]
    err = error(await client.post(API, json=body, headers=org.headers), 400, "validation_error")
    assert err["details"][0]["path"] == "$.reward_metric_id"


async def test_unknown_metric_refused(client: Client, org: Org) -> None:
    response = await client.post(API, json=hero(uuid4()), headers=org.headers)
    err = error(response, 400, "validation_error")
    assert err["details"] == [
        {"path": "$.reward_metric_id", "message": err["details"][0]["message"]}
    ]
    assert "no metric" in err["message"]


async def test_other_orgs_metric_refused_like_a_missing_one(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org
) -> None:
    theirs = await insert_metric(conn, other_org, name="Their secret metric")
    missing = uuid4()
    a = error(
        await client.post(API, json=hero(theirs), headers=org.headers), 400, "validation_error"
    )
    b = error(
        await client.post(API, json=hero(missing), headers=org.headers), 400, "validation_error"
    )
    assert a["message"].replace(str(theirs), "ID") == b["message"].replace(str(missing), "ID")
    assert "secret" not in a["message"]
    assert await conn.fetchval("SELECT count(*) FROM optimizations") == 0


async def test_auth_required(client: Client) -> None:
    assert (await client.get(API)).status_code == 401
    assert (await client.post(API, json={})).status_code == 401


# --- list -----------------------------------------------------------------------------------


async def test_list_limit_order_and_archived(
    client: Client, conn: asyncpg.Connection, org: Org, metric_id: UUID
) -> None:
    ids = [(await create(client, org, metric_id, name=f"opt {i}"))["id"] for i in range(12)]
    listed = (await client.get(API, headers=org.headers)).json()["optimizations"]
    assert [o["id"] for o in listed] == ids[::-1][:10]  # default limit 10, newest first
    three = (await client.get(API, params={"limit": 3}, headers=org.headers)).json()
    assert [o["name"] for o in three["optimizations"]] == ["opt 11", "opt 10", "opt 9"]
    everything = (await client.get(API, params={"limit": 100}, headers=org.headers)).json()
    assert len(everything["optimizations"]) == 12

    archived = await client.patch(
        f"{API}/{ids[11]}", json={"status": "archived"}, headers=org.headers
    )
    assert archived.json()["status"] == "archived"
    visible = (await client.get(API, params={"limit": 100}, headers=org.headers)).json()
    assert ids[11] not in [o["id"] for o in visible["optimizations"]]
    assert len(visible["optimizations"]) == 11
    shown = await client.get(
        API, params={"limit": 100, "include_archived": "true"}, headers=org.headers
    )
    assert shown.json()["optimizations"][0]["id"] == ids[11]
    # an archived optimization is still readable by id
    assert (await client.get(f"{API}/{ids[11]}", headers=org.headers)).status_code == 200


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
async def test_list_limit_bounds(client: Client, org: Org, limit: str) -> None:
    response = await client.get(API, params={"limit": limit}, headers=org.headers)
    err = error(response, 400, "validation_error")
    assert "limit" in err["message"]


# --- lifecycle over HTTP: every (from, to) pair ---------------------------------------------

PAIRS = list(itertools.product(lifecycle.STATUSES, repeat=2))


@pytest.mark.parametrize(("current", "target"), PAIRS)
async def test_transition_table(
    client: Client, conn: asyncpg.Connection, org: Org, metric_id: UUID, current: str, target: str
) -> None:
    oid = (await create(client, org, metric_id, draft=True))["id"]
    await set_status(conn, oid, current)
    before = await conn.fetchrow(
        "SELECT status, updated_at FROM optimizations WHERE id = $1", UUID(oid)
    )
    response = await client.patch(f"{API}/{oid}", json={"status": target}, headers=org.headers)
    after = await conn.fetchrow(
        "SELECT status, updated_at FROM optimizations WHERE id = $1", UUID(oid)
    )
    if current == target:  # same status: an idempotent no-op
        assert response.status_code == 200 and response.json()["status"] == current
        assert after == before
    elif target in lifecycle.TRANSITIONS[current]:  # type: ignore[index]
        assert response.status_code == 200, response.text
        assert response.json()["status"] == target
        assert after is not None and after["status"] == target
    else:
        err = error(response, 409, "invalid_transition")
        allowed = list(lifecycle.TRANSITIONS[current])  # type: ignore[index]
        assert err["details"] == {"from": current, "to": target, "allowed": allowed}
        assert f"to {target}" in err["message"]
        assert ("allowed: " + (", ".join(allowed) or "none")) in err["message"]
        assert after == before


async def test_transition_waits_for_the_row_lock(
    client: Client, db_url: str, org: Org, metric_id: UUID
) -> None:
    """A PATCH reads the status under SELECT … FOR UPDATE: while another transaction holds the
    row it waits, then judges the transition against the status that transaction committed.

    The other transaction runs on its own thread and loop: the test client blocks this loop
    while a request is in flight.
    """
    oid = UUID((await create(client, org, metric_id))["id"])
    locked = threading.Event()

    async def hold_then_complete() -> None:
        other = await connect(db_url)
        try:
            async with other.transaction():
                await other.execute("SELECT 1 FROM optimizations WHERE id = $1 FOR UPDATE", oid)
                locked.set()
                await anyio.sleep(0.5)
                await other.execute(
                    "UPDATE optimizations SET status = 'completed' WHERE id = $1", oid
                )
        finally:
            await other.close()

    holder = threading.Thread(target=anyio.run, args=(hold_then_complete,))
    holder.start()
    try:
        assert await anyio.to_thread.run_sync(locked.wait, 10)
        response = await client.patch(
            f"{API}/{oid}", json={"status": "paused"}, headers=org.headers
        )
    finally:
        await anyio.to_thread.run_sync(holder.join, 10)
    err = error(response, 409, "invalid_transition")
    # Judged against the status the other transaction committed: the PATCH waited for it.
    assert err["details"]["from"] == "completed"


async def test_edit_and_launch_a_draft_in_one_request(
    client: Client, org: Org, metric_id: UUID
) -> None:
    oid = (await create(client, org, metric_id, draft=True))["id"]
    response = await client.patch(
        f"{API}/{oid}",
        json={"status": "live", "excluded_combinations": [{"headline": "Start free"}]},
        headers=org.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "live" and response.json()["variants_count"] == 8


async def test_shipped_can_be_undone(client: Client, org: Org, metric_id: UUID) -> None:
    oid = (await create(client, org, metric_id))["id"]
    for status in ("shipped", "live", "completed", "archived"):
        response = await client.patch(f"{API}/{oid}", json={"status": status}, headers=org.headers)
        assert response.json()["status"] == status


# --- edits ----------------------------------------------------------------------------------

DESIGN_EDITS: list[dict[str, Any]] = [
    {"design_factors": [HERO_FACTORS[0]]},
    {
        "design_factors": [
            HERO_FACTORS[0],
            {"name": "cta_text", "levels": ["Get started", "Try it free", "Go"]},
        ]
    },
    {"context_factors": [{"name": "country"}]},
    {"excluded_combinations": [{"headline": "Scale up"}]},
    {"model_type": "mab"},
]


REFUSED_EDITS = [("live", edit) for edit in DESIGN_EDITS] + [
    (status, DESIGN_EDITS[0]) for status in ("paused", "shipped", "completed")
]


@pytest.mark.parametrize(("status", "edit"), REFUSED_EDITS)
async def test_design_edits_refused_outside_draft(
    client: Client,
    conn: asyncpg.Connection,
    org: Org,
    metric_id: UUID,
    status: str,
    edit: dict[str, Any],
) -> None:
    oid = (await create(client, org, metric_id))["id"]
    await set_status(conn, oid, status)
    before = await conn.fetchrow("SELECT * FROM optimizations WHERE id = $1", UUID(oid))
    response = await client.patch(
        f"{API}/{oid}", json={**edit, "name": "renamed"}, headers=org.headers
    )
    err = error(response, 409, "conflict")
    field = next(iter(edit))
    assert f"{field} can change only while the optimization is a draft" in err["message"]
    assert f"it is {status}" in err["message"]
    assert err["details"] == {"status": status, "fields": [field]}
    assert await conn.fetchrow("SELECT * FROM optimizations WHERE id = $1", UUID(oid)) == before


@pytest.mark.parametrize("edit", DESIGN_EDITS)
async def test_design_edits_allowed_in_draft(
    client: Client, org: Org, metric_id: UUID, edit: dict[str, Any]
) -> None:
    oid = (await create(client, org, metric_id, draft=True))["id"]
    response = await client.patch(f"{API}/{oid}", json=edit, headers=org.headers)
    assert response.status_code == 200, response.text
    field, value = next(iter(edit.items()))
    shown = (await client.get(f"{API}/{oid}", headers=org.headers)).json()
    if field == "model_type":
        assert shown[field] == value
    elif field == "context_factors":
        assert [f["name"] for f in shown[field]] == [f["name"] for f in value]
    elif field == "design_factors":
        assert [f["levels"] for f in shown[field]] == [f["levels"] for f in value]
    else:
        assert shown[field] == value


async def test_resending_unchanged_design_is_not_an_edit(
    client: Client, org: Org, metric_id: UUID
) -> None:
    created = await create(client, org, metric_id)
    echo = {
        k: created[k]
        for k in ("design_factors", "context_factors", "excluded_combinations", "model_type")
    }
    response = await client.patch(
        f"{API}/{created['id']}",
        json={**echo, "name": "Hero v2", "status": "paused"},
        headers=org.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Hero v2" and response.json()["status"] == "paused"


async def test_settings_editable_while_live(
    client: Client, conn: asyncpg.Connection, org: Org, metric_id: UUID
) -> None:
    oid = (await create(client, org, metric_id))["id"]
    second = await insert_metric(conn, org, name="Revenue", reward_type="numeric")
    response = await client.patch(
        f"{API}/{oid}",
        json={
            "name": "Hero (revenue)",
            "holdout_percentage": 25,
            "sticky": False,
            "attribution": {"type": "last_touch", "conversion_window_hours": 0.5},
            "reward_metric_id": str(second),
        },
        headers=org.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "live" and body["name"] == "Hero (revenue)"
    assert body["holdout_percentage"] == 25 and body["sticky"] is False
    assert body["attribution"]["conversion_window_hours"] == 0.5
    assert body["reward_metric"] == {"id": str(second), "name": "Revenue", "reward_type": "numeric"}


async def test_edit_revalidates_resulting_configuration(
    client: Client, org: Org, metric_id: UUID
) -> None:
    oid = (
        await create(
            client, org, metric_id, draft=True, excluded_combinations=[{"headline": "Scale up"}]
        )
    )["id"]
    # dropping the level an exclusion names makes the stored rule invalid
    response = await client.patch(
        f"{API}/{oid}",
        json={
            "design_factors": [
                {"name": "headline", "levels": ["Ship faster", "Build better"]},
                HERO_FACTORS[1],
            ]
        },
        headers=org.headers,
    )
    err = error(response, 400, "validation_error")
    assert err["details"][0]["path"] == "$.excluded_combinations[0].headline"
    response = await client.patch(
        f"{API}/{oid}",
        json={
            "model_type": "mab",
            "design_factors": [
                {"name": f"f{i}", "levels": [str(j) for j in range(11)]} for i in range(3)
            ],
            "excluded_combinations": [],
        },
        headers=org.headers,
    )
    assert "1,331 variants" in error(response, 400, "validation_error")["message"]


async def test_edit_with_other_orgs_metric_refused(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org, metric_id: UUID
) -> None:
    oid = (await create(client, org, metric_id))["id"]
    theirs = await insert_metric(conn, other_org)
    response = await client.patch(
        f"{API}/{oid}", json={"reward_metric_id": str(theirs)}, headers=org.headers
    )
    assert error(response, 400, "validation_error")["details"][0]["path"] == "$.reward_metric_id"
    assert await conn.fetchval("SELECT reward_metric_id FROM optimizations") == metric_id


async def test_patch_validation_names_the_field(client: Client, org: Org, metric_id: UUID) -> None:
    oid = (await create(client, org, metric_id))["id"]
    for body, path in (
        ({"holdout_percentage": 60}, "$.holdout_percentage"),
        ({"status": "running"}, "$.status"),
        ({"name": None}, "$.name"),
        ({"draft": True}, "$.draft"),
    ):
        response = await client.patch(f"{API}/{oid}", json=body, headers=org.headers)
        assert error(response, 400, "validation_error")["details"][0]["path"] == path


async def test_archived_is_read_only(client: Client, org: Org, metric_id: UUID) -> None:
    oid = (await create(client, org, metric_id))["id"]
    await client.patch(f"{API}/{oid}", json={"status": "archived"}, headers=org.headers)
    err = error(
        await client.patch(f"{API}/{oid}", json={"name": "again"}, headers=org.headers),
        409,
        "conflict",
    )
    assert "archived" in err["message"]
    same = await client.patch(f"{API}/{oid}", json={"status": "archived"}, headers=org.headers)
    assert same.status_code == 200


async def test_empty_patch_is_a_no_op(client: Client, org: Org, metric_id: UUID) -> None:
    created = await create(client, org, metric_id)
    response = await client.patch(f"{API}/{created['id']}", json={}, headers=org.headers)
    assert response.status_code == 200
    assert response.json()["updated_at"] == created["updated_at"]


# --- delete ---------------------------------------------------------------------------------


async def test_delete_draft(
    client: Client, conn: asyncpg.Connection, org: Org, metric_id: UUID
) -> None:
    oid = (await create(client, org, metric_id, draft=True))["id"]
    response = await client.delete(f"{API}/{oid}", headers=org.headers)
    assert response.status_code == 200
    assert response.json()["id"] == oid and response.json()["deleted"] is True
    assert response.json()["meta"]["organization_id"] == str(org.id)
    assert await conn.fetchval("SELECT count(*) FROM optimizations") == 0
    assert await conn.fetchval("SELECT count(*) FROM models") == 0
    error(await client.get(f"{API}/{oid}", headers=org.headers), 404, "not_found")
    error(await client.delete(f"{API}/{oid}", headers=org.headers), 404, "not_found")


async def test_delete_draft_takes_its_assignments_and_only_its_own(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org, metric_id: UUID
) -> None:
    """Assignments have no foreign key (migration 0008): the delete itself removes the draft's,
    leaving other optimizations' rows for the same user alone, in any organization."""
    draft = (await create(client, org, metric_id, draft=True))["id"]
    kept = (await create(client, org, metric_id, draft=True))["id"]
    insert = (
        "INSERT INTO assignments (optimization_id, anonymous_id, organization_id, variant_number,"
        " holdout) VALUES ($1, 'u', $2, 1, false)"
    )
    await conn.execute(insert, UUID(draft), org.id)
    await conn.execute(insert, UUID(kept), org.id)
    # Another tenant's row that (by forging) carries the draft's id is not this org's to delete.
    await conn.execute(insert.replace("'u'", "'v'"), UUID(draft), other_org.id)
    error(await client.delete(f"{API}/{draft}", headers=other_org.headers), 404, "not_found")
    assert await conn.fetchval("SELECT count(*) FROM assignments") == 3
    assert (await client.delete(f"{API}/{draft}", headers=org.headers)).status_code == 200
    left = await conn.fetch("SELECT optimization_id, organization_id FROM assignments ORDER BY 2")
    assert sorted((r["optimization_id"], r["organization_id"]) for r in left) == sorted(
        [(UUID(kept), org.id), (UUID(draft), other_org.id)]
    )


@pytest.mark.parametrize("status", ["live", "paused", "shipped", "completed", "archived"])
async def test_delete_refused_unless_draft(
    client: Client, conn: asyncpg.Connection, org: Org, metric_id: UUID, status: str
) -> None:
    oid = (await create(client, org, metric_id, draft=True))["id"]
    await set_status(conn, oid, status)
    err = error(await client.delete(f"{API}/{oid}", headers=org.headers), 409, "conflict")
    assert "only drafts can be deleted" in err["message"] and "archive" in err["message"].lower()
    assert err["details"] == {"status": status}
    assert await conn.fetchval("SELECT count(*) FROM optimizations") == 1


# --- variants -------------------------------------------------------------------------------


async def test_variants_listing(client: Client, org: Org, metric_id: UUID) -> None:
    oid = (
        await create(
            client,
            org,
            metric_id,
            excluded_combinations=[{"headline": "Scale up", "cta_text": "Try it free"}],
        )
    )["id"]
    page = (await client.get(f"{API}/{oid}/variants", headers=org.headers)).json()
    assert page["total"] == 10 and page["limit"] == 100 and page["offset"] == 0
    variants = page["variants"]
    assert [v["number"] for v in variants] == list(range(1, 11))
    assert variants[0] == {
        "number": 1,
        "variant_key": "0.0",
        "excluded": False,
        "variant": {"headline": "Ship faster", "cta_text": "Get started"},
    }
    assert variants[6]["variant_key"] == "3.0"
    assert [v["number"] for v in variants if v["excluded"]] == [6]
    assert variants[5]["variant"] == {"headline": "Scale up", "cta_text": "Try it free"}
    tail = (
        await client.get(
            f"{API}/{oid}/variants", params={"limit": 3, "offset": 8}, headers=org.headers
        )
    ).json()
    assert [v["number"] for v in tail["variants"]] == [9, 10]
    error(
        await client.get(f"{API}/{oid}/variants", params={"limit": 0}, headers=org.headers),
        400,
        "validation_error",
    )


# --- tenancy --------------------------------------------------------------------------------


async def test_other_organization_sees_nothing(
    client: Client, conn: asyncpg.Connection, org: Org, other_org: Org, metric_id: UUID
) -> None:
    victim = await create(client, org, metric_id, draft=True)
    oid = victim["id"]
    before = await conn.fetchrow("SELECT * FROM optimizations WHERE id = $1", UUID(oid))
    attacker = other_org.headers

    assert (await client.get(API, params={"include_archived": "true"}, headers=attacker)).json()[
        "optimizations"
    ] == []
    for response in (
        await client.get(f"{API}/{oid}", headers=attacker),
        await client.get(f"{API}/{oid}/variants", headers=attacker),
        await client.patch(f"{API}/{oid}", json={"name": "pwned"}, headers=attacker),
        await client.patch(f"{API}/{oid}", json={"status": "live"}, headers=attacker),
        await client.delete(f"{API}/{oid}", headers=attacker),
    ):
        err = error(response, 404, "not_found")
        assert "Landing" not in response.text and "headline" not in response.text
        assert err["message"] == f"no optimization {oid} in this organization"
    assert await conn.fetchrow("SELECT * FROM optimizations WHERE id = $1", UUID(oid)) == before
    # the same 404 as an id that exists nowhere
    missing = uuid4()
    err = error(await client.get(f"{API}/{missing}", headers=attacker), 404, "not_found")
    assert err["message"] == f"no optimization {missing} in this organization"


async def test_malformed_id_is_not_a_server_error(client: Client, org: Org) -> None:
    response = await client.get(f"{API}/not-a-uuid", headers=org.headers)
    assert response.status_code in (400, 404)


async def test_openapi_documents_the_resource(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert {
        "/api/v2/optimizations",
        "/api/v2/optimizations/{optimization_id}",
        "/api/v2/optimizations/{optimization_id}/variants",
    } <= set(schema["paths"])
    item = schema["paths"]["/api/v2/optimizations/{optimization_id}"]
    assert {"get", "patch", "delete"} <= set(item)
    assert "OptimizationCreate" in schema["components"]["schemas"]
