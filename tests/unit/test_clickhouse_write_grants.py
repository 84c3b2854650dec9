"""Which ``SHOW GRANTS`` lines make a ClickHouse account more than a reader of the dataset.

The lines are in the form ClickHouse prints them (checked against the engine in
tests/integration/test_connected_clickhouse.py, where chdb's own account is all-powerful).
"""

from __future__ import annotations

from levered.db.connected_clickhouse import write_grants


def test_a_select_only_account_gets_no_warning() -> None:
    lines = [
        "GRANT SELECT ON analytics.* TO levered_reader",
        "GRANT SHOW TABLES, SHOW COLUMNS ON analytics.* TO levered_reader",
        "GRANT levered_readers TO levered_reader",  # a role: FINAL lists its privileges
    ]
    assert write_grants(lines, "analytics") == []


def test_writes_on_everything_or_on_the_dataset_are_found_in_order() -> None:
    lines = [
        "GRANT SELECT, INSERT(amount, anonymous_id) ON analytics.purchases TO u",
        "GRANT ALTER UPDATE, ALTER DELETE ON analytics.* TO u",
        "GRANT ALL ON *.* TO admin WITH GRANT OPTION",
        "GRANT CREATE TABLE, SELECT ON `analytics`.* TO u",
    ]
    assert write_grants(lines, "analytics") == [
        "INSERT ON analytics.purchases",
        "ALTER UPDATE ON analytics.*",
        "ALTER DELETE ON analytics.*",
        "ALL ON *.*",
        "CREATE TABLE ON `analytics`.*",
    ]


def test_writes_elsewhere_revokes_and_look_alikes_are_not_writes_here() -> None:
    lines = [
        "GRANT INSERT, DROP TABLE ON scratch.* TO u",  # another database
        "REVOKE INSERT ON analytics.* FROM u",
        "GRANT SELECT, SHOW, SOURCES, dictGet ON analytics.* TO u",
        "GRANT ALLOW SQL SECURITY NONE ON *.* TO u",  # starts with ALL, is not ALL
        "GRANT TABLE ENGINE ON * TO u",
    ]
    assert write_grants(lines, "analytics") == []
