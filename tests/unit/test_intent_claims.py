"""The commit intent record carries a gang's WaitForFirstConsumer claims, so whoever recovers a commit
knows which claims to finish or give back (and which claim objects: their uids)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from scheduler.binder.commit import INTENT_ANNOTATION, Intent, pending_copy
from scheduler.binder.volumes import ClaimBind


def test_claims_round_trip_through_the_record() -> None:
    claims = (ClaimBind("ns/data-a", "uid-a", "pv-1", "n1"), ClaimBind("ns/data-b", "uid-b", "", "n2"))
    intent = Intent("c1", "ns/g", (("ns/a", "n1"), ("ns/b", "n2")), "me", claims=claims)
    text = intent.to_json()
    assert json.loads(text)["claims"] == {
        "ns/data-a": {"uid": "uid-a", "volume": "pv-1", "node": "n1"},
        "ns/data-b": {"uid": "uid-b", "volume": "", "node": "n2"},
    }
    assert Intent.parse("ns/g", text) == intent


def test_a_record_without_claims_stays_as_it_was() -> None:
    intent = Intent("c1", "ns/g", (("ns/a", "n1"),), "me")
    assert "claims" not in json.loads(intent.to_json())
    parsed = Intent.parse("ns/g", intent.to_json())
    assert parsed is not None and parsed.claims == ()


def test_a_claim_without_its_uid_makes_the_record_unreadable() -> None:
    """Recovery clears an unreadable record rather than touching claims it cannot identify."""
    data = {"id": "c1", "holder": "me", "bindings": {"ns/a": "n1"}, "claims": {"ns/data-a": {"volume": "pv-1"}}}
    assert Intent.parse("ns/g", json.dumps(data)) is None


def test_an_anchor_record_names_its_gang_and_is_read_back_from_the_member_pod() -> None:
    """A plain gang's record lives on its anchor member: read from that pod (as recovery reads pending
    pods' records), it is the gang's record, kept on the anchor; a lone pod's own record stays its own."""
    intent = Intent("c1", "ns/g", (("ns/a", "n1"), ("ns/b", "n2")), "me", anchor="ns/b")
    assert json.loads(intent.to_json())["gang"] == "ns/g"
    assert Intent.parse("ns/b", intent.to_json(), on_pod=True) == intent
    lone = Intent("c2", "ns/solo", (("ns/solo", "n1"),), "me", on_pod=True)
    assert "gang" not in json.loads(lone.to_json())
    assert Intent.parse("ns/solo", lone.to_json(), on_pod=True) == lone


def test_an_anchor_record_is_live_only_while_a_member_is_pending_as_the_pod_it_recorded() -> None:
    """The record stays on its anchor after the commit; it says work is left only while a member it names is
    pending with the uid it recorded. A member pending under another uid (deleted and created again after
    the commit) does not count: a bound pod never returns to Pending under its uid."""

    @dataclass
    class P:
        uid: str

    intent = Intent(
        "c1", "ns/g", (("ns/a", "n1"), ("ns/b", "n2")), "me", (("ns/a", "u-a"), ("ns/b", "u-b")), anchor="ns/a"
    )
    assert intent.unfinished({"ns/b": P("u-b")})  # cut short: b never bound
    assert not intent.unfinished({})  # every member bound (or gone)
    assert not intent.unfinished({"ns/b": P("u-b2")})  # b replaced after the commit
    assert not intent.unfinished({"ns/c": P("u-b")})  # another gang's pod


def test_a_pod_created_again_never_carries_the_old_pods_record() -> None:
    """A rollback re-creates an unowned anchor from its own object: the copy keeps its other annotations but
    not the record its old bind wrote (that record would name the new pod's gang with stale uids)."""
    obj = {
        "metadata": {
            "name": "a",
            "namespace": "ns",
            "uid": "u-a",
            "annotations": {"pod-group-name": "g", INTENT_ANNOTATION: '{"id": "c1"}'},
        },
        "spec": {"nodeName": "n1", "containers": []},
    }
    copy = pending_copy(obj)
    assert copy["metadata"]["annotations"] == {"pod-group-name": "g"}
    assert "nodeName" not in copy["spec"] and "uid" not in copy["metadata"]
    only = {"metadata": {"name": "a", "annotations": {INTENT_ANNOTATION: "{}"}}, "spec": {}}
    assert "annotations" not in pending_copy(only)["metadata"]
