"""docs/CONTRACT.md is the contract kept beside the repository, byte for byte, so a clone
carries the public names its README points at."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_CONTRACT = REPO.parent / "shared" / "CONTRACT.md"


def test_the_contract_in_docs_is_the_shared_one() -> None:
    if not SHARED_CONTRACT.exists():
        pytest.skip("the shared contract is not next to this clone")
    assert (REPO / "docs" / "CONTRACT.md").read_bytes() == SHARED_CONTRACT.read_bytes()


def test_the_readme_points_at_the_copy_in_the_clone() -> None:
    readme = (REPO / "README.md").read_text()
    assert "(docs/CONTRACT.md)" in readme
    assert "../shared/CONTRACT.md" not in readme
