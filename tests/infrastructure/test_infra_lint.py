"""template.yaml passes cfn-lint (no errors, no warnings) and `sam validate --lint` for both config environments."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.infrastructure, pytest.mark.xdist_group("infrastructure")]


def test_cfn_lint_reports_nothing(infra):
    # cfn-lint exits 0 only without errors (bit 2) and warnings (bit 4); informational findings are not reported by
    # default. Any output at all is a finding, so it must be empty too.
    result = infra.run([infra.cfn_lint, "--", infra.template], timeout=120)
    assert result.returncode == 0, infra.describe(result)
    assert result.stdout.strip() == "", infra.describe(result)


@pytest.mark.parametrize("config_env", ["sandbox", "production"])
def test_sam_validate_lint(infra, config_env):
    result = infra.run(
        [
            infra.sam,
            "validate",
            "--lint",
            "--config-file",
            infra.samconfig,
            "--config-env",
            config_env,
            "--template-file",
            infra.template,
        ],
        timeout=180,
    )
    assert result.returncode == 0, infra.describe(result)
    assert "is a valid SAM Template" in result.stdout + result.stderr, infra.describe(result)
