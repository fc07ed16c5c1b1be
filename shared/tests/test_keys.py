import pytest
from dagster import AssetKey

from shared.keys import key_for_identifier, table_identifier, table_key


def test_key_names_table_both_ways():
    assert table_key("raw", "users") == AssetKey(["raw", "users"])
    assert table_identifier(AssetKey(["raw", "users"])) == "raw.users"
    assert table_identifier("marts/dim_users") == "marts.dim_users"
    assert key_for_identifier("ml.user_features") == AssetKey(["ml", "user_features"])


@pytest.mark.parametrize("bad", [["users"], ["a", "b", "c"], ["raw", ""]])
def test_keys_that_name_no_table_are_rejected(bad):
    with pytest.raises(ValueError, match="does not name an Iceberg table"):
        table_identifier(bad)
