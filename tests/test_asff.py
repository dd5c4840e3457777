"""An alert as an ASFF finding: the required attributes, Security Hub's limits, stable ids, mappings."""

from __future__ import annotations

from datetime import UTC, datetime

from kvs_sentinel.findings import finding_uid
from kvs_sentinel.sinks.asff import asff_finding
from tests.support.alert_samples import sample_alert

NOW = datetime(2026, 2, 3, 10, 20, tzinfo=UTC)
REQUIRED = {
    "SchemaVersion",
    "Id",
    "ProductArn",
    "GeneratorId",
    "AwsAccountId",
    "Types",
    "CreatedAt",
    "UpdatedAt",
    "Severity",
    "Title",
    "Description",
    "Resources",
}


def finding(**changes: object) -> dict[str, object]:
    return asff_finding(sample_alert(**changes), account="999988887777", region="eu-west-1", now=NOW)


def test_every_required_attribute_is_present_and_well_formed() -> None:
    found = finding()
    assert set(found) >= REQUIRED
    assert found["SchemaVersion"] == "2018-10-08"
    assert found["ProductArn"] == "arn:aws:securityhub:eu-west-1:999988887777:product/999988887777/default"
    assert found["AwsAccountId"] == "999988887777"
    assert found["UpdatedAt"] == "2026-02-03T10:20:00.000Z"
    assert found["CreatedAt"] == "2026-02-03T10:15:42.000Z"
    assert found["FindingProviderFields"] == {"Severity": found["Severity"], "Types": found["Types"]}


def test_long_texts_are_cut_to_security_hubs_limits() -> None:
    found = finding(title="t" * 400, summary="s" * 5000, remediation="r" * 900, user_agent="u" * 9000)
    assert len(found["Title"]) == 256  # type: ignore[arg-type]
    assert len(found["Description"]) == 1024  # type: ignore[arg-type]
    assert len(found["Remediation"]["Recommendation"]["Text"]) == 512  # type: ignore[index]
    assert len(found["ProductFields"]["kvs-sentinel/user_agent"]) == 2048  # type: ignore[index]


def test_severity_maps_to_asff_labels() -> None:
    labels = {s: finding(severity=s)["Severity"]["Label"] for s in ("info", "low", "medium", "high")}  # type: ignore[index]
    assert labels == {"info": "INFORMATIONAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}


def test_attack_techniques_in_tags_become_ttp_types() -> None:
    found = finding(tags=("monitoring", "mitre-attack:T1562.008", "mitre-attack:T1098.003"))
    assert found["Types"] == [
        "Software and Configuration Checks/AWS Security Best Practices",
        "TTPs/Defense Evasion/Impair Defenses",
        "TTPs/Persistence/Account Manipulation",
    ]


def test_resources_are_typed_from_their_arns() -> None:
    found = finding(
        resource="arn:aws:cloudtrail:eu-west-1:111122223333:trail/org",
        principal="arn:aws:iam::111122223333:role/admin",
        access_key_id=None,
    )
    resources = [(r["Type"], r["Id"]) for r in found["Resources"]]  # type: ignore[attr-defined]
    assert resources == [
        ("AwsCloudTrailTrail", "arn:aws:cloudtrail:eu-west-1:111122223333:trail/org"),
        ("AwsIamRole", "arn:aws:iam::111122223333:role/admin"),
    ]
    alone = finding(resource=None, principal=None, access_key_id=None)
    assert alone["Resources"] == [
        {
            "Type": "Other",
            "Id": "AWS::::Account:111122223333",
            "Partition": "aws",
            "Region": "eu-west-1",
            "Details": {"Other": {"role": "account"}},
        }
    ]


def test_an_aws_service_caller_is_a_domain_and_an_address_a_remote_ip() -> None:
    by_service = finding(source_ip="cloudtrail.amazonaws.com")["Action"]["AwsApiCallAction"]  # type: ignore[index]
    assert (by_service["CallerType"], by_service["DomainDetails"]) == (
        "domain",
        {"Domain": "cloudtrail.amazonaws.com"},
    )
    by_address = finding()["Action"]["AwsApiCallAction"]  # type: ignore[index]
    assert by_address["RemoteIpDetails"] == {"IpAddressV4": "198.51.100.7"}
    assert by_address["Api"] == "GetDataEndpoint"


def test_ids_are_stable_per_event_and_distinct_across_events() -> None:
    assert finding_uid(sample_alert()) == finding_uid(sample_alert(location="elsewhere", form="s3"))
    no_id = finding_uid(sample_alert(event_id=None))
    assert no_id == finding_uid(sample_alert(event_id=None, location="another delivery"))
    assert no_id != finding_uid(sample_alert(event_id=None, event_time="2026-02-03T10:15:43Z"))
    assert no_id.startswith("kvs-sentinel/kvs-producer-consumer-endpoint/sha256-")
    grouped = sample_alert(details={"grouped": {"repeats": 3}})
    assert finding_uid(grouped) == finding_uid(sample_alert()) + "/grouped"
