"""Attestations are exact: a decision about products going to zero (5.3, 12.2) accepts only the products it
names, and a key TOML files where it means nothing is an error that names its line."""
from __future__ import annotations

import asyncpg
import pytest

from deploycheck import attest
from deploycheck.checklist import default
from deploycheck.pytest_plugin import REHEARSAL_ATTESTATIONS
from deploycheck.checks.integrity import check_stock_kept
from deploycheck.failure import CheckFailed

KNOWN = set(default().items) | {"final:4", "final:7"}


def parse(tmp_path, text: str) -> dict:
    (tmp_path / "attest.toml").write_text(text)
    return attest.parse([], tmp_path / "attest.toml", "rina", KNOWN)


def refused(tmp_path, text: str) -> str:
    with pytest.raises(attest.AttestationError) as raised:
        parse(tmp_path, text)
    return str(raised.value)


def test_products_are_read_for_the_stock_decisions(tmp_path):
    found = parse(tmp_path, '"2.1" = "Window 02:00-03:00"\n["5.3"]\ntext = "Owner accepts"\nby = "owner"\n'
                            'products = ["VIDIO1B", " STEAM60 "]\n')
    assert found["5.3"].products == ("VIDIO1B", "STEAM60") and found["2.1"].products is None
    assert found["5.3"].evidence()["Accepted Products"] == ["VIDIO1B", "STEAM60"]
    assert attest.from_evidence(found["5.3"].evidence())["products"] == ["VIDIO1B", "STEAM60"]
    assert "products" not in found["2.1"].as_dict()


def test_a_plain_key_after_a_table_is_an_error_with_its_line(tmp_path):
    message = refused(tmp_path, '["2.4"]\ntext = "Primary: Rina"\nby = "rina"\n\n"2.1" = "Window 02:00-03:00"\n')
    assert 'line 5: "2.1" is read as part of the table ["2.4"]' in message
    assert "Move the line \"2.1\" = ... above the first [table] header" in message


def test_an_unknown_key_in_a_table_is_an_error(tmp_path):
    message = refused(tmp_path, '["2.4"]\ntxt = "Primary: Rina"\n')
    assert 'line 2: ["2.4"] has a key "txt" that means nothing' in message


def test_products_on_another_item_mean_nothing(tmp_path):
    message = refused(tmp_path, '["2.4"]\ntext = "Primary: Rina"\nproducts = ["X"]\n')
    assert "line 3: products means something only for" in message and "5.3" in message


def test_products_must_be_a_list_of_codes(tmp_path):
    message = refused(tmp_path, '["12.2"]\ntext = "Owner accepts"\nproducts = "VIDIO1B"\n')
    assert "line 3: products of 12.2 must be a list of product codes" in message


def test_an_unquoted_item_id_is_named(tmp_path):
    assert 'write item ids in quotes, "2.1"' in refused(tmp_path, '2.1 = "Window 02:00-03:00"\n')


GOING = [{"id": 12, "code": "VIDIO1B"}, {"id": 19, "code": "STEAM60"}, {"id": 20, "code": "GPLAY50"}]


def test_a_decision_accepts_only_the_products_it_names():
    named = attest.Attestation("5.3", "Owner accepts", "owner", "now", ("VIDIO1B", "STEAM60", "GPLAY50", "X"))
    assert attest.acceptance_problem("5.3", named, GOING) is None
    partial = attest.Attestation("5.3", "Owner accepts", "owner", "now", ("VIDIO1B",))
    message = attest.acceptance_problem("5.3", partial, GOING)
    assert message.startswith("2 product(s) go from in stock to zero that the 5.3 attestation does not name: "
                              "STEAM60, GPLAY50")


def test_a_decision_without_products_accepts_none():
    message = attest.acceptance_problem("5.3", attest.Attestation("5.3", "Owner accepts", "o", "now"), GOING)
    assert "names no products" in message and 'products = ["VIDIO1B", "STEAM60", "GPLAY50"]' in message
    assert "VIDIO1B, STEAM60, GPLAY50" in attest.acceptance_problem("5.3", None, GOING)


def test_the_rehearsal_file_is_valid_and_names_the_generated_products():
    found = attest.parse([], REHEARSAL_ATTESTATIONS, "rehearsal", KNOWN)
    for item in ("5.3", "12.2"):
        assert {"VIDIO1B", "STEAM60", "GPLAY50"} <= set(found[item].products)


@pytest.fixture
async def shop(fresh_db):
    """Three products that had stock at preflight and have none now."""
    conn = await asyncpg.connect(fresh_db)
    await conn.execute("CREATE TABLE products (id int PRIMARY KEY, code text, stock int);"
                       "INSERT INTO products VALUES (12, 'VIDIO1B', 0), (19, 'STEAM60', 0), (20, 'GPLAY50', 0),"
                       "(21, 'KEPT', 4)")
    yield conn
    await conn.close()


BEFORE = {"12": 1, "19": 88, "20": 73, "21": 4}


async def test_12_2_fails_on_a_product_the_attestation_does_not_name(shop):
    given = attest.Attestation("12.2", "Owner accepts", "owner", "now", ("VIDIO1B", "STEAM60"))
    with pytest.raises(CheckFailed, match="does not name: GPLAY50[.]") as raised:
        await check_stock_kept(shop, BEFORE, given)
    assert "VIDIO1B" not in str(raised.value).split("does not name:")[1].split(".")[0]


async def test_12_2_passes_when_every_product_is_named(shop):
    given = attest.Attestation("12.2", "Owner accepts", "owner", "now", ("VIDIO1B", "STEAM60", "GPLAY50"))
    evidence = await check_stock_kept(shop, BEFORE, given)
    assert evidence["Products Lost Stock"] == 3 and evidence["Lost stock accepted"] == "Owner accepts"


async def test_12_2_unattested_names_every_product(shop):
    with pytest.raises(CheckFailed, match='products = \\["STEAM60", "GPLAY50", "VIDIO1B"\\]'):
        await check_stock_kept(shop, BEFORE, None)


def test_a_misplaced_key_stops_the_run_before_anything_runs(project):
    project.makefile(".toml", attest='["2.4"]\ntext = "Primary: Rina"\n"2.1" = "Window 02:00-03:00"\n')
    result = project.runpytest("-m", "preflight", "--attestations", "attest.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert 'attest.toml line 3: "2.1" is read as part of the table ["2.4"]' in result.stderr.str()
