"""The projector's consumer group: shared by the projectors of one schema only."""

from __future__ import annotations

from streams.projector import ProjectorSettings


def test_projectors_of_another_schema_form_a_group_of_their_own() -> None:
    default = ProjectorSettings("k:9092", "p.")
    other = ProjectorSettings("k:9092", "p.", schema="rm_b")
    # the default keeps the group it always had; another schema reads every partition
    assert default.group_id == "p.projections"
    assert other.group_id == "p.projections.rm_b"
    assert ProjectorSettings("k:9092", "p.", schema="rm_b").group_id == other.group_id
