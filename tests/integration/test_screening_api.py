"""POST /v1/screening/checks through the in-process API (real handler, DynamoDB Local for the audit event), and
`moncore screening score` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import Tenant, new_tenant, table_items

pytestmark = pytest.mark.xdist_group("integration")

PATH = "/v1/screening/checks"


@pytest.fixture(scope="module")
def tenant(call: Any, admin_key: str) -> Tenant:
    return new_tenant(call, admin_key, "Screening")


def test_a_listed_person_is_found_with_modifiers_and_audited(call: Any, tenant: Tenant) -> None:
    body = {"name": "Nicolás Maduro", "country": "VE", "date_of_birth": "1962-11-23"}
    response = call("POST", PATH, key=tenant.key, json=body, headers={"X-Correlation-Id": "screen-maduro-1"})
    assert response.status == 200, response.text
    matches = response.json()["matches"]
    top = matches[0]
    assert (top["list"], top["entry_id"], top["name"]) == ("ofac_sdn", "22790", "MADURO MOROS, Nicolas")
    assert top["matched_name"] == "MADURO MOROS, Nicolas"
    assert top["score"] == 0.9133  # name 0.8333 + date of birth 0.05 + nationality 0.03
    assert top["decision"] == "possible"
    assert "date of birth 1962-11-23 equals the listed 1962-11-23: +0.05" in top["explanation"]
    assert "country VE is a listed nationality: +0.03" in top["explanation"]
    audits = [
        item
        for item in table_items("MONCORE_AUDIT_TABLE")
        if item["tenant_id"] == tenant.id and item["action"] == "screening.checked"
    ]
    assert len(audits) == 1
    payload = json.loads(audits[0]["payload"]) if isinstance(audits[0]["payload"], str) else audits[0]["payload"]
    assert audits[0]["correlation_id"] == "screen-maduro-1"
    assert payload["query"] == body
    assert payload["matches"][0] == {"list": "ofac_sdn", "entry_id": "22790", "score": "0.9133", "decision": "possible"}


def test_matches_are_sorted_by_score_and_innocents_get_none(call: Any, tenant: Tenant) -> None:
    response = call("POST", PATH, key=tenant.key, json={"name": "Usama bin Laden"})
    assert response.status == 200
    matches = response.json()["matches"]
    assert len(matches) >= 2
    assert [match["score"] for match in matches] == sorted((match["score"] for match in matches), reverse=True)
    assert (matches[0]["list"], matches[0]["entry_id"], matches[0]["decision"]) == ("ofac_sdn", "6365", "confirmed")
    assert set(matches[0]) == {"list", "entry_id", "name", "matched_name", "score", "decision", "explanation"}
    aliases = call("POST", PATH, key=tenant.key, json={"name": "Allied Democratic Forces"}).json()["matches"]
    found = {(match["list"], match["entry_id"], match["matched_name"], match["decision"]) for match in aliases}
    assert ("un_consolidated", "CDe.001", "Allied Democratic Forces", "confirmed") in found  # UN entity alias
    innocent = call("POST", PATH, key=tenant.key, json={"name": "Emma Johnson", "country": "GB"})
    assert innocent.status == 200 and innocent.json() == {"matches": []}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": 42},
        {"name": ["Maduro"]},
        {"name": "Maduro", "country": "XX"},
        {"name": "Maduro", "country": "ve"},
        {"name": "Maduro", "country": "VEN"},
        {"name": "Maduro", "date_of_birth": "1962-13-01"},
        {"name": "Maduro", "date_of_birth": "23/11/1962"},
        {"name": "Maduro", "date_of_birth": "2999-01-01"},
        {"name": "Maduro", "list": "ofac_sdn"},
    ],
)
def test_bad_input_is_422(call: Any, tenant: Tenant, body: dict[str, Any]) -> None:
    response = call("POST", PATH, key=tenant.key, json=body)
    assert response.status == 422, response.text
    assert response.json()["code"] == "validation_error"


def test_an_admin_key_cannot_screen_on_the_partner_plane(call: Any, admin_key: str) -> None:
    assert call("POST", PATH, key=admin_key, json={"name": "Maduro"}).status in {401, 403}
    assert call("POST", PATH, json={"name": "Maduro"}).status == 401


def _moncore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("moncore")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "moncore.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False, env=env or dict(os.environ)
    )


def test_cli_prints_the_score_of_a_pair() -> None:
    done = _moncore("screening", "score", "Nicolás Maduro Moros", "MADURO MOROS, Nicolas")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["score"] == 1.0 and result["decision"] == "confirmed"
    assert "nicolas=nicolas" in result["explanation"]
    different = json.loads(_moncore("screening", "score", "Maria Garcia", "Mario Garza").stdout)
    assert different["score"] < 0.8 and different["decision"] is None


def test_cli_errors(tmp_path: Path) -> None:
    assert _moncore("screening", "score", "only one name").returncode == 2  # argparse usage error
    missing = _moncore(
        "screening", "score", "a", "b", env={**os.environ, "MONCORE_SANCTIONS_DIR": str(tmp_path / "nowhere")}
    )
    assert missing.returncode == 2 and "missing sanctions list files" in missing.stderr
