"""deploy/sentinel.yaml: least privilege for the sentinel itself, and the shape the README promises.

The template is parsed with cfn-lint's decoder (short tags such as !Ref become {"Ref": ...}); cfn-lint
itself runs in .ci/run. The last test runs two sentinels on one moto queue: the scale-out the template's
auto-scaling relies on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import decode

from kvs_sentinel.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = ROOT / "deploy" / "sentinel.yaml"
PACK = ROOT / "config" / "packs" / "kvs.yaml"

# Actions that support no resource-level permission: only these may have Resource "*". Each needs a reason.
RESOURCE_STAR_ONLY = {
    "ecr:GetAuthorizationToken": "the registry token is account-wide; IAM supports only *",
    "iam:ListPolicies": "listing policies has no resource; IAM supports only *",
    # only with AuditIntervalSeconds > 0 (the audit inside run), all read-only and account-wide
    "iam:GetAccountAuthorizationDetails": "the whole account's identities: IAM supports only *",
    "iam:GetAccountSummary": "account-wide counters: IAM supports only *",
    "cloudtrail:DescribeTrails": "lists the trails: CloudTrail supports only *",
    "events:ListRules": "lists the rules: EventBridge supports only *",
}
TASK_ROLE_ACTIONS = {
    "sqs:ReceiveMessage": {"Fn::GetAtt": ["Queue", "Arn"]},
    "sqs:DeleteMessage": {"Fn::GetAtt": ["Queue", "Arn"]},
    "sqs:ChangeMessageVisibility": {"Fn::GetAtt": ["Queue", "Arn"]},
    "sqs:GetQueueAttributes": {"Fn::GetAtt": ["Queue", "Arn"]},
    "sns:Publish": {"Ref": "AlertTopic"},
    "s3:GetObject": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${TrailBucketName}/*"},
    # the default product of this account: the resource BatchImportFindings is authorised on
    "securityhub:BatchImportFindings": {
        "Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/"
        "${AWS::AccountId}/default"
    },
    # only with JudgeCustomerPolicies=true (service.iam_policy_lookup), all read-only
    "iam:GetPolicy": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/*"},
    "iam:GetPolicyVersion": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/*"},
    "iam:ListPolicies": "*",
    "iam:GetAccountAuthorizationDetails": "*",
    "iam:GetAccountSummary": "*",
    "cloudtrail:DescribeTrails": "*",
    "events:ListRules": "*",
    "iam:ListAccessKeys": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*"},
    "iam:GetAccessKeyLastUsed": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*"},
    "cloudtrail:GetTrailStatus": {"Fn::Sub": "arn:${AWS::Partition}:cloudtrail:*:${AWS::AccountId}:trail/*"},
    "cloudtrail:GetEventSelectors": {
        "Fn::Sub": "arn:${AWS::Partition}:cloudtrail:*:${AWS::AccountId}:trail/*"
    },
    # only with SharedState=true (the default): the state store's item calls, on the stack's table
    "dynamodb:GetItem": {"Fn::GetAtt": ["StateTable", "Arn"]},
    "dynamodb:PutItem": {"Fn::GetAtt": ["StateTable", "Arn"]},
    "dynamodb:UpdateItem": {"Fn::GetAtt": ["StateTable", "Arn"]},
    "events:ListTargetsByRule": {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/*"
    },
    # the queue's messages (and, on the S3 path, the trail's log files) are encrypted with the stack's key
    "kms:Decrypt": {"Fn::If": ["MakeKey", {"Fn::GetAtt": ["EncryptionKey", "Arn"]}, {"Ref": "KmsKeyArn"}]},
}
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
THE_KEY = {"Fn::If": ["MakeKey", {"Fn::GetAtt": ["EncryptionKey", "Arn"]}, {"Ref": "KmsKeyArn"}]}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode(str(TEMPLATE_PATH))
    assert not problems, problems
    assert decoded is not None
    return json.loads(json.dumps(decoded))  # plain dicts and lists


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM statement anywhere under `node`, both branches of an Fn::If included."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node
            return
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from statements(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_text(resource: Any) -> str | None:
    """A literal ARN, or the pattern of an Fn::Sub; None for Ref/GetAtt (a specific resource)."""
    if isinstance(resource, str):
        return resource
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        return str(sub if isinstance(sub, str) else sub[0])
    return None


def too_broad(resource: Any) -> bool:
    text = resource_text(resource)
    # "*" itself, or an ARN whose resource part is all wildcard ("arn:...:sqs:...:*"); "bucket/*" is fine
    return text is not None and (text == "*" or re.search(r":\*$", text) is not None)


def test_no_policy_allows_a_wildcard_action_or_a_star_resource(template: dict[str, Any]) -> None:
    # a key policy's "*" is the key itself: test_the_stacks_key_lets_each_service_only_what_it_needs
    found = list(statements({n: r for n, r in template["Resources"].items() if r["Type"] != "AWS::KMS::Key"}))
    kinds = {r["Type"] for r in template["Resources"].values() if list(statements(r))}
    assert {"AWS::IAM::Role", "AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy"} <= kinds
    problems = []
    for statement in found:
        if statement["Effect"] != "Allow":
            continue  # a Deny may be as broad as it likes (the bucket's TLS-only statement)
        where = statement.get("Sid") or json.dumps(statement)[:120]
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{where}: NotAction/NotResource in an Allow")
        actions = as_list(statement.get("Action", []))
        problems += [f"{where}: wildcard action {a}" for a in actions if "*" in a]
        if statement.get("Principal") == "*" or statement.get("Principal") == {"AWS": "*"}:
            problems.append(f"{where}: Allow to any principal")
        for resource in as_list(statement.get("Resource", [])):
            if too_broad(resource) and not set(actions) <= RESOURCE_STAR_ONLY.keys():
                problems.append(f"{where}: resource {resource_text(resource)} for {actions}")
    assert not problems, "\n".join(problems)
    assert len(found) >= 10


def test_no_managed_policies_are_attached(template: dict[str, Any]) -> None:
    for name, role in resources(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        assert not resources(template, kind)


def test_task_role_allows_exactly_the_sentinels_actions_on_its_own_resources(
    template: dict[str, Any],
) -> None:
    role = template["Resources"]["TaskRole"]["Properties"]
    granted: dict[str, Any] = {}
    for statement in statements(role["Policies"]):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert action not in granted, f"{action} granted twice"
            (resource,) = as_list(statement["Resource"])
            granted[action] = resource
    assert granted == TASK_ROLE_ACTIONS
    # the S3 statement exists only when the S3 path is used, Security Hub's only with its sink
    (policy,) = role["Policies"]
    conditional = [s for s in policy["PolicyDocument"]["Statement"] if "Fn::If" in s]
    assert [c["Fn::If"][0] for c in conditional] == [
        "UseS3Path",
        "UseSecurityHub",
        "LookUpPolicies",
        "LookUpPolicies",
        "RunAudit",
        "RunAudit",
        "RunAudit",
        "RunAudit",
        "MakeStateTable",
    ]
    assert template["Parameters"]["AuditIntervalSeconds"]["Default"] == 0, "opt-in"
    assert conditional[0]["Fn::If"][1]["Action"] == "s3:GetObject"
    assert conditional[1]["Fn::If"][1]["Action"] == "securityhub:BatchImportFindings"
    assert conditional[1]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert template["Parameters"]["JudgeCustomerPolicies"]["Default"] == "false"
    assert template["Conditions"]["UseS3Path"]  # the bucket parameter being set
    assert template["Conditions"]["UseSecurityHub"] == {
        "Fn::And": [{"Condition": "IsSentinel"}, {"Fn::Equals": [{"Ref": "EnableSecurityHub"}, "true"]}]
    }
    assert template["Parameters"]["EnableSecurityHub"]["Default"] == "false", "opt-in"


def test_execution_role_reads_only_the_slack_secret_and_decrypts_only_with_a_given_key(
    template: dict[str, Any],
) -> None:
    role = template["Resources"]["ExecutionRole"]["Properties"]
    granted = {a: s for s in statements(role["Policies"]) for a in as_list(s["Action"])}
    assert granted["secretsmanager:GetSecretValue"]["Resource"] == {"Ref": "SlackWebhookSecretArn"}
    assert granted["kms:Decrypt"]["Resource"] == {"Ref": "SlackSecretKmsKeyArn"}
    (policy,) = role["Policies"]
    kms = next(s for s in policy["PolicyDocument"]["Statement"] if "kms:Decrypt" in json.dumps(s))
    assert kms["Fn::If"][0] == "SecretHasCmk"
    assert granted["logs:PutLogEvents"]["Resource"] == {"Fn::GetAtt": ["LogGroup", "Arn"]}
    container = the_container(template)
    assert container["Secrets"] == [
        {"Name": "SLACK_WEBHOOK_URL", "ValueFrom": {"Ref": "SlackWebhookSecretArn"}}
    ]


def test_queue_is_encrypted_and_dead_letters_to_an_encrypted_dlq(template: dict[str, Any]) -> None:
    queue = template["Resources"]["Queue"]["Properties"]
    dlq = template["Resources"]["DeadLetterQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == dlq["KmsMasterKeyId"] == THE_KEY
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert dlq["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
    (source,) = dlq["RedriveAllowPolicy"]["sourceQueueArns"]
    assert source["Fn::Sub"].endswith(":${AWS::StackName}-events")
    assert queue["QueueName"] == {"Fn::Sub": "${AWS::StackName}-events"}


def test_queue_policy_admits_only_the_sentinel_rule(template: dict[str, Any]) -> None:
    (policy,) = resources(template, "AWS::SQS::QueuePolicy").values()
    assert policy["Properties"]["Queues"] == [{"Ref": "Queue"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["CloudTrailRule", "Arn"]}}
    }


def pack_event_sources() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "eventSource":
                    found.update(v for v in as_list(value) if isinstance(v, str))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([d.get("match") for d in yaml.safe_load(PACK.read_text())["detectors"]])
    return found


def pack_event_names(event_source: str) -> set[str]:
    names: set[str] = set()
    for detector in yaml.safe_load(PACK.read_text())["detectors"]:
        text = json.dumps(detector["match"])
        if event_source in text:
            for value in re.findall(r'"eventName": (\[[^\]]*\]|"[^"]*")', text):
                names.update(as_list(json.loads(value)))
    return names


def test_rule_sends_read_only_management_events_from_every_source_the_pack_reads(
    template: dict[str, Any],
) -> None:
    rule = template["Resources"]["CloudTrailRule"]
    assert rule["Condition"] == "IsSentinel"
    properties = rule["Properties"]
    assert properties["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    assert properties["EventPattern"]["detail-type"] == ["AWS API Call via CloudTrail"]
    needed = {"aws." + source.removesuffix(".amazonaws.com") for source in pack_event_sources()}
    assert "aws.kinesisvideo" in needed
    branches = properties["EventPattern"]["$or"]
    assert {s for branch in branches for s in branch["source"]} == needed
    # KMS only by the names the pack reads: its read-only Decrypt events would flood the queue
    (kms,) = [branch for branch in branches if branch["source"] == ["aws.kms"]]
    assert set(kms["detail"]["eventName"]) == pack_event_names("kms.amazonaws.com")
    (target,) = properties["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["Queue", "Arn"]}


def test_us_east_1_forwarder_sends_iam_events_to_the_sentinel_region_bus_only(
    template: dict[str, Any],
) -> None:
    rule = template["Resources"]["IamForwardRule"]
    assert rule["Condition"] == "IsForwarder"
    assert rule["Properties"]["EventPattern"]["source"] == ["aws.iam"]
    (target,) = rule["Properties"]["Targets"]
    bus = "arn:${AWS::Partition}:events:${SentinelRegion}:${AWS::AccountId}:event-bus/default"
    assert target["Arn"] == {"Fn::Sub": bus}
    assert target["RoleArn"] == {"Fn::GetAtt": ["IamForwardRole", "Arn"]}
    role = template["Resources"]["IamForwardRole"]
    assert role["Condition"] == "IsForwarder"
    (statement,) = statements(role["Properties"]["Policies"])
    assert (statement["Action"], statement["Resource"]) == ("events:PutEvents", {"Fn::Sub": bus})
    # nothing else is created in forwarder mode
    forwarder_only = {n for n, r in template["Resources"].items() if r.get("Condition") == "IsForwarder"}
    assert forwarder_only == {"IamForwardRule", "IamForwardRole"}
    assert all("Condition" in r for r in template["Resources"].values())


def test_trail_logs_management_events_and_kvs_data_events(template: dict[str, Any]) -> None:
    trail = template["Resources"]["Trail"]
    assert trail["Condition"] == "MakeTrail"
    properties = trail["Properties"]
    assert properties["IsMultiRegionTrail"] is True
    assert properties["EnableLogFileValidation"] is True
    selectors = [
        {s["Field"]: s["Equals"] for s in selector["FieldSelectors"]}
        for selector in properties["AdvancedEventSelectors"]
    ]
    assert {"eventCategory": ["Management"]} in selectors
    assert {"eventCategory": ["Data"], "resources.type": ["AWS::KinesisVideo::Stream"]} in selectors


def the_container(template: dict[str, Any]) -> dict[str, Any]:
    task = template["Resources"]["TaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    return dict(container)


def test_task_runs_on_fargate_with_health_check_stop_timeout_and_logs(template: dict[str, Any]) -> None:
    task = template["Resources"]["TaskDefinition"]["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    container = the_container(template)
    assert container["StopTimeout"] <= 30
    assert container["HealthCheck"]["Command"] == ["CMD", "kvs-sentinel", "health", "--port", "8080"]
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert container["Command"][-1].endswith("exec kvs-sentinel run")
    service = template["Resources"]["Service"]["Properties"]
    assert service["LaunchType"] == "FARGATE"
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    assert template["Resources"]["LogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_trail_the_queues_and_the_logs_use_the_given_key_or_one_the_stack_makes(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    assert resources["Trail"]["Properties"]["KMSKeyId"] == THE_KEY
    assert resources["LogGroup"]["Properties"]["KmsKeyId"] == THE_KEY
    assert template["Parameters"]["KmsKeyArn"]["Default"] == ""
    assert template["Conditions"]["MakeKey"] == {
        "Fn::And": [{"Condition": "IsSentinel"}, {"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]
    }
    key = resources["EncryptionKey"]
    assert (key["Condition"], key["DeletionPolicy"]) == ("MakeKey", "Retain")
    assert key["Properties"]["EnableKeyRotation"] is True


def test_the_stacks_key_lets_each_service_only_what_it_needs(template: dict[str, Any]) -> None:
    policy = template["Resources"]["EncryptionKey"]["Properties"]["KeyPolicy"]
    by_principal = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] == "*", "in a key policy, * is this key"
        principal = statement["Principal"]
        name = principal.get("Service") or principal["AWS"]
        by_principal.setdefault(json.dumps(name), []).append(statement)
    (account,) = by_principal.pop(
        json.dumps({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"})
    )
    assert account["Action"] == "kms:*", "the account delegates to IAM (the default key policy)"
    trail = by_principal.pop(json.dumps("cloudtrail.amazonaws.com"))
    encrypt = next(s for s in trail if s["Action"] == "kms:GenerateDataKey*")
    assert encrypt["Condition"]["StringEquals"]["aws:SourceArn"]["Fn::Sub"].endswith(
        ":trail/${AWS::StackName}-trail"
    )
    (events,) = by_principal.pop(json.dumps("events.amazonaws.com"))
    assert sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert events["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    (logs,) = by_principal.pop(json.dumps({"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}))
    log_group = logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"]["Fn::Sub"]
    assert log_group.endswith(":log-group:/ecs/${AWS::StackName}")
    assert template["Resources"]["LogGroup"]["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/ecs/${AWS::StackName}"
    }
    assert not by_principal, f"no one else: {list(by_principal)}"


def test_task_has_a_read_only_root_and_writes_its_configuration_to_a_tmp_volume(
    template: dict[str, Any],
) -> None:
    task = template["Resources"]["TaskDefinition"]["Properties"]
    container = the_container(template)
    assert container["ReadonlyRootFilesystem"] is True
    (mount,) = container["MountPoints"]
    assert (mount["ContainerPath"], mount["ReadOnly"]) == ("/tmp", False)
    (volume,) = task["Volumes"]
    assert volume == {"Name": mount["SourceVolume"]}, "task storage: no host path, nothing shared"
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["KVS_SENTINEL_CONFIG"].startswith("/tmp/")
    assert '> "$KVS_SENTINEL_CONFIG"' in container["Command"][-1], "the only write: the rendered config"


def test_producer_parameters_default_to_the_packs_own_lists(template: dict[str, Any]) -> None:
    lists = yaml.safe_load(PACK.read_text())["lists"]
    parameters = template["Parameters"]
    assert parameters["ProducerPrincipalPatterns"]["Default"].split(",") == lists["producer_principals"]
    assert parameters["ProducerRoleNames"]["Default"].split(",") == lists["producer_role_names"]


def rendered_config(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, security_hub: bool
) -> Any:
    """The task's configuration as the stack renders it, loaded as `run` would."""
    container = the_container(template)
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    body, variables = environment["KVS_SENTINEL_CONFIG_YAML"]["Fn::Sub"]
    parameters = template["Parameters"]
    _, with_hub, without_hub = variables["SecurityHubSink"]["Fn::If"]
    values = {
        "Producers": '", "'.join(parameters["ProducerPrincipalPatterns"]["Default"].split(",")),
        "ProducerNames": '", "'.join(parameters["ProducerRoleNames"]["Default"].split(",")),
        "Networks": '", "'.join(parameters["TrustedNetworks"]["Default"].split(",")),
        "Lookup": parameters["JudgeCustomerPolicies"]["Default"],
        "AuditSeconds": str(parameters["AuditIntervalSeconds"]["Default"]),
        "State": "dynamodb:kvs-sentinel-StateTable-ABC123",
        "AWS::StackName": "kvs-sentinel",
        "AWS::AccountId": "111122223333",
        "Queue": "https://sqs.eu-west-1.amazonaws.com/111122223333/kvs-sentinel-events",
        "AlertTopic": "arn:aws:sns:eu-west-1:111122223333:kvs-sentinel-alerts",
        "Key": KEY_ARN,
    }

    def substitute(text: str) -> str:
        return re.sub(r"\$\{(?!!)([^}]+)\}", lambda m: values[m.group(1)], text).replace("${!", "${")

    values["SecurityHubSink"] = substitute(with_hub["Fn::Sub"]) if security_hub else without_hub
    assert set(variables) <= values.keys()
    path = tmp_path / "sentinel.yaml"
    path.write_text(substitute(body))
    monkeypatch.setenv("KVS_SENTINEL_QUEUE_URL", values["Queue"])
    monkeypatch.setenv("KVS_SENTINEL_TOPIC_ARN", values["AlertTopic"])
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T000/B000/XXXXXXXX")
    return load_config(path)


def test_rendered_configuration_is_valid_and_exits_before_the_stop_timeout(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = the_container(template)
    loaded = rendered_config(template, tmp_path, monkeypatch, security_hub=False)
    assert [s.queue_url for s in loaded.sources] == [
        "https://sqs.eu-west-1.amazonaws.com/111122223333/kvs-sentinel-events"
    ]
    assert set(loaded.delivery.sinks) == {"slack", "sns"}
    assert "fc00::/7" in loaded.lists["trusted_networks"]
    assert loaded.lists["sentinel_kms_keys"] == [KEY_ARN], "disabling the stack's key is critical"
    assert loaded.config.service.grace_seconds == 25
    assert loaded.config.service.iam_policy_lookup is False
    assert loaded.config.service.audit_interval_seconds == 0
    assert loaded.config.service.state == "dynamodb:kvs-sentinel-StateTable-ABC123"
    assert loaded.config.service.grace_seconds < container["StopTimeout"] <= 30
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["KVS_SENTINEL_CONFIG"] == "/tmp/sentinel.yaml"


def test_the_state_table_is_shared_encrypted_and_expires_its_items(template: dict[str, Any]) -> None:
    assert template["Parameters"]["SharedState"]["Default"] == "true"
    table = template["Resources"]["StateTable"]
    assert table["Condition"] == "MakeStateTable"
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # the attribute kvs_sentinel/state/dynamodb.py writes and filters on
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["SSESpecification"]["KMSMasterKeyId"] == THE_KEY
    variables = the_container(template)["Environment"]
    [rendered] = [e["Value"] for e in variables if e["Name"] == "KVS_SENTINEL_CONFIG_YAML"]
    state = rendered["Fn::Sub"][1]["State"]
    assert state == {"Fn::If": ["MakeStateTable", {"Fn::Sub": "dynamodb:${StateTable}"}, "memory"]}


def test_security_hub_sink_is_configured_only_when_the_stack_enables_it(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = rendered_config(template, tmp_path, monkeypatch, security_hub=True)
    assert set(loaded.delivery.sinks) == {"slack", "sns", "securityhub"}
    hub = loaded.delivery.sinks["securityhub"]
    assert hub.type == "securityhub"
    assert hub.config.account_id == "111122223333", "no STS call needed: the stack knows its account"


def test_the_task_writes_the_emf_metrics_the_alarms_and_dashboard_read(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emf = rendered_config(template, tmp_path, monkeypatch, security_hub=False).config.service.cloudwatch_emf
    assert emf is not None, "the stack turns EMF on"
    assert emf.namespace == "KvsSentinel"
    assert emf.dimensions == {"Stack": "kvs-sentinel"}
    emitted = emitted_metric_names()
    for name, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        if properties["Namespace"] != "KvsSentinel":
            continue
        assert properties["MetricName"] in emitted, f"{name}: the task writes no {properties['MetricName']}"
        assert properties["Dimensions"] == [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}], name
    for namespace, metric in dashboard_metrics(template):
        if namespace == "KvsSentinel":
            assert metric in emitted, f"the dashboard shows {metric}, which the task does not write"


def emitted_metric_names() -> set[str]:
    """Every metric name the EMF emitter writes, read from its output (not from a list kept by hand)."""
    from kvs_sentinel.emf import EmfConfig, EmfEmitter
    from kvs_sentinel.metrics import Metrics
    from kvs_sentinel.stats import RunStats

    metrics = Metrics()
    metrics.watch_stats(RunStats())
    metrics.event_seen("2026-02-03T10:15:00Z")
    metrics.message_processed(0.1)
    metrics.alert_emitted("kvs-a", "high")
    metrics.sink_failed("slack", retryable=True)
    names: set[str] = set()
    for document in EmfEmitter(metrics, EmfConfig.model_validate({})).documents():
        for directive in document["_aws"]["CloudWatchMetrics"]:
            names.update(metric["Name"] for metric in directive["Metrics"])
    return names


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard JSON with each ${...} of its Fn::Sub replaced by a placeholder of the right kind."""
    text = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    numbers = {"LagAlarmSeconds": "900"}
    body: dict[str, Any] = json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: numbers.get(m.group(1), "x"), text))
    return body


def dashboard_metrics(template: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(namespace, metric) of every metric row of the dashboard, "." and "..." resolved."""
    for widget in dashboard_body(template)["widgets"]:
        previous: list[Any] = []
        for row in widget["properties"].get("metrics", []):
            plain = [item for item in row if isinstance(item, str)]
            if not plain:
                continue  # an expression row
            if plain[0] == "...":
                plain = previous[: len(previous) - len(plain) + 1] + plain[1:]
            else:
                plain = [previous[i] if item == "." else item for i, item in enumerate(plain)]
            previous = plain
            yield plain[0], plain[1]


def test_the_dashboard_shows_what_an_operator_needs(template: dict[str, Any]) -> None:
    body = dashboard_body(template)
    titles = {widget["properties"]["title"] for widget in body["widgets"]}
    assert {"Messages", "Events", "Alerts by severity", "Sink failures", "Queues", "Alarms"} <= titles
    assert any(title.startswith("Event lag") for title in titles)
    shown = set(dashboard_metrics(template))
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in shown, "DLQ depth"
    assert {("KvsSentinel", m) for m in ("MessagesReceived", "Events", "Alerts", "EventLagSeconds")} <= shown
    (alarms,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(alarms["properties"]["alarms"]) == 4
    severities = [w for w in body["widgets"] if w["properties"]["title"] == "Alerts by severity"]
    rows = severities[0]["properties"]["metrics"]
    assert [row[-1] for row in rows] == ["critical", "high", "medium", "low", "info"]


def alarm(template: dict[str, Any], name: str) -> dict[str, Any]:
    found = template["Resources"][name]
    assert found["Condition"] == "IsSentinel"
    properties: dict[str, Any] = found["Properties"]
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert properties["AlarmActions"] == notify, f"{name} notifies the alarm topic when one is given"
    assert properties["OKActions"] == notify
    return properties


def test_dlq_alarm_fires_on_the_first_dead_lettered_message(template: dict[str, Any]) -> None:
    dlq = alarm(template, "DeadLetterQueueAlarm")
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)


def test_lag_alarm_fires_after_15_minutes_above_15_minutes(template: dict[str, Any]) -> None:
    lag = alarm(template, "EventLagAlarm")
    assert (lag["MetricName"], lag["Statistic"]) == ("EventLagSeconds", "Maximum")
    assert lag["Threshold"] == {"Ref": "LagAlarmSeconds"}
    assert template["Parameters"]["LagAlarmSeconds"]["Default"] == 900
    assert lag["ComparisonOperator"] == "GreaterThanThreshold"
    assert lag["Period"] * lag["EvaluationPeriods"] == 900
    assert lag["DatapointsToAlarm"] == lag["EvaluationPeriods"]
    assert lag["TreatMissingData"] == "notBreaching"


def test_silence_alarm_fires_after_an_hour_without_a_single_event(template: dict[str, Any]) -> None:
    silence = alarm(template, "SilenceAlarm")
    assert (silence["MetricName"], silence["Statistic"]) == ("Events", "Sum")
    assert (silence["ComparisonOperator"], silence["Threshold"]) == ("LessThanOrEqualToThreshold", 0)
    assert silence["TreatMissingData"] == "breaching", "no task writing metrics is silence too"
    assert silence["Period"] == 3600
    assert silence["EvaluationPeriods"] == silence["DatapointsToAlarm"] == {"Ref": "SilenceAlarmHours"}
    parameter = template["Parameters"]["SilenceAlarmHours"]
    assert (parameter["Default"], parameter["MaxValue"]) == (1, 24), "CloudWatch evaluates at most a day"


def test_sink_failures_alarm_fires_on_failures_in_two_periods(template: dict[str, Any]) -> None:
    failures = alarm(template, "SinkFailuresAlarm")
    assert (failures["MetricName"], failures["Statistic"], failures["Threshold"]) == (
        "SinkFailures",
        "Sum",
        0,
    )
    assert failures["EvaluationPeriods"] == failures["DatapointsToAlarm"] == 2


def test_service_scales_on_queue_depth(template: dict[str, Any]) -> None:
    target = template["Resources"]["ScalableTarget"]["Properties"]
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert "${Service.Name}" in target["ResourceId"]["Fn::Sub"]
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    by_action = {}
    for alarm in alarms.values():
        actions = alarm["Properties"].get("AlarmActions", [])
        for action in actions if isinstance(actions, list) else []:  # not the Fn::If of the alarm topic
            by_action[action["Ref"]] = alarm["Properties"]
    for policy_name in ("ScaleOutPolicy", "ScaleInPolicy"):
        policy = template["Resources"][policy_name]["Properties"]
        assert policy["ScalingTargetId"] == {"Ref": "ScalableTarget"}
        alarm = by_action[policy_name]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}]
    assert by_action["ScaleOutPolicy"]["Threshold"] == {"Ref": "ScaleOutQueueDepth"}


def test_the_member_accounts_audit_role_allows_exactly_what_the_audit_reads(template: dict[str, Any]) -> None:
    decoded, problems = decode(str(ROOT / "deploy" / "audit-role.yaml"))
    assert not problems, problems
    audit_template = json.loads(json.dumps(decoded))
    role = audit_template["Resources"]["AuditRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Ref": "AuditorPrincipalArn"}}, "only the auditor may assume it"
    granted = {action for s in statements(role["Policies"]) for action in as_list(s["Action"])}
    # the same reads the stack grants its own task role for the audit inside run
    task_role = template["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    in_run = {
        action
        for statement in task_role
        if isinstance(statement, dict) and statement.get("Fn::If", [None])[0] == "RunAudit"
        for action in as_list(statement["Fn::If"][1]["Action"])
    }
    assert granted == in_run
    assert all(action.split(":")[1].startswith(("Get", "List", "Describe")) for action in granted), (
        "read-only"
    )
