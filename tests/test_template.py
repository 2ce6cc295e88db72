"""template.yaml as CloudFormation receives it: translated by aws-sam-translator, then evaluated.

The SAM transform runs offline, in a subprocess of the virtualenv `scripts/ci-checks` creates
(.venv-sam/, the same translator as the pinned SAM CLI; its pinned pydantic cannot live in .venv).
Local CodeUri/ContentUri paths are replaced by S3 URIs first, as `sam package` does. The translated
template is then evaluated here for given parameter values: conditions, Fn::If / AWS::NoValue,
Ref, Fn::Sub, Fn::Join, Fn::Split and Fn::Select are resolved (pseudo parameters get fixed
values; a reference to a resource becomes `<LogicalId>` or `<LogicalId.Attribute>`), so each test
reads what a stack with those parameters would hold.

What is checked: every environment variable the router reads is set where its feature is on (and
nothing else is set); every IAM statement names its resource; the policies grant exactly the calls
the code makes (read from the code); the public URL permissions follow the URL onto the alias; a
parameter-only change publishes a new version; a change of the SSM config parameter invokes the
function (and nothing else does), which may bump the state table's version item and nothing else of
it; the config parameter and the state table survive the stack; template.yaml creates no API
Gateway while template.local.yaml's HTTP API mounts every path, with the same function.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "edge_router"
TEMPLATE = ROOT / "template.yaml"
LOCAL_TEMPLATE = ROOT / "template.local.yaml"
LAYER_REQUIREMENTS = ROOT / "layers" / "edge_router_deps" / "requirements.txt"

REGION, ACCOUNT, STACK = "us-east-1", "123456789012", "edge-router-test"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:edge-router/admin-key-AbCdEf"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:edge-router-alerts"
LAMBDA_TARGETS = [f"{FN}:orders", f"{FN}:billing:live"]

EVERYTHING = {
    "AliasName": "prod",
    "ConfigTableName": "edge-router-config",
    "ConfigItemId": "main",
    "BackendsTableName": "edge-router-backends",
    "EnableStateTable": "true",
    "ScheduleEnabled": "true",
    "LambdaTargetArns": ",".join(LAMBDA_TARGETS),
    "AdminKeySecretArn": SECRET_ARN,
    "AdminKeyKmsKeyArn": KMS_KEY_ARN,
    "Tracing": "Active",
    "EnableSnapStart": "true",
    "ReservedConcurrency": "50",
    "AlarmTopicArn": TOPIC_ARN,
    "ServiceName": "edge-router-prod",
    "LogLevel": "WARNING",
}
CASES: dict[str, tuple[Path, dict[str, str]]] = {
    "defaults": (TEMPLATE, {}),
    "everything": (TEMPLATE, EVERYTHING),
    "admin-key-in-ssm": (
        TEMPLATE,
        {"AdminKeyParameterName": "/edge-router/admin-key", "AdminKeyKmsKeyArn": KMS_KEY_ARN},
    ),
    "iam-auth-no-alarms": (TEMPLATE, {"FunctionUrlAuthType": "AWS_IAM", "EnableAlarms": "false"}),
    "ssm-with-state-table": (TEMPLATE, {"EnableStateTable": "true"}),
    "local": (LOCAL_TEMPLATE, {}),
}

# Run in the SAM virtualenv: parse each template (SAM's YAML reader) and translate it.
TRANSLATE = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

out = {}
for name, (path, parameters) in json.load(sys.stdin).items():
    raw = yaml_parse(open(path, encoding="utf-8").read())
    packaged = yaml_parse(open(path, encoding="utf-8").read())
    for resource in packaged["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = "s3://artifacts/" + properties[key].strip("/")
    out[name] = {"raw": raw, "translated": transform(packaged, parameters, NoManagedPolicies())}
json.dump(out, sys.stdout)
"""


def _translator_python() -> str | None:
    """A Python that has aws-sam-translator: $SAM_TRANSLATOR_PYTHON, .venv-sam's, or this one."""
    candidates = [os.environ.get("SAM_TRANSLATOR_PYTHON", ""), str(ROOT / ".venv-sam" / "bin" / "python")]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file():
            probe = [candidate, "-c", "import samtranslator"]
            if subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode == 0:
                return candidate
    return sys.executable if importlib.util.find_spec("samtranslator") else None


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    python = _translator_python()
    if python is None:
        pytest.skip(
            "aws-sam-translator is not installed: `bash scripts/ci-checks` creates .venv-sam with it "
            "(or set SAM_TRANSLATOR_PYTHON)"
        )
    cases = {name: [str(path), parameters] for name, (path, parameters) in CASES.items()}
    result = subprocess.run(
        [python, "-c", TRANSLATE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": REGION, "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    translated: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return translated


# --- a small CloudFormation evaluator -----------------------------------------------------------

NO_VALUE = object()


@dataclass
class Stack:
    """A translated template with parameter values: `resolve` gives what CloudFormation would."""

    template: dict[str, Any]
    given: Mapping[str, str]

    def __post_init__(self) -> None:
        specs = self.template.get("Parameters", {})
        unknown = set(self.given) - set(specs)
        assert not unknown, f"no such parameters: {unknown}"
        self.parameters: dict[str, Any] = {}
        for name, spec in specs.items():
            value = str(self.given.get(name, spec.get("Default", "")))
            if spec["Type"] == "CommaDelimitedList":
                self.parameters[name] = [item.strip() for item in value.split(",")]
            else:
                self.parameters[name] = value
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self.truth(self.template["Conditions"][name])
        return self._conditions[name]

    def truth(self, expression: Any) -> bool:
        (function, argument), *_ = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return bool(left == right)
        if function == "Fn::Not":
            return not self.truth(argument[0])
        if function == "Fn::And":
            return all(self.truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self.truth(item) for item in argument)
        raise AssertionError(f"condition function {function} is not evaluated here")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return f"<{logical_id}.{attribute}>"
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(index)]
            if key.startswith("Fn::") or key == "Condition":
                raise AssertionError(f"{key} is not evaluated here")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        return f"<{name}>"

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {name: self.resolve(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self.resolve({"Fn::GetAtt": name.split(".", 1)}))
            value = self.ref(name)
            assert isinstance(value, str), f"${{{name}}} is not a string"
            return value

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def resources(self, kind: str | None = None) -> dict[str, dict[str, Any]]:
        """The resources the stack creates (conditions applied), their properties resolved."""
        found = {}
        for logical_id, resource in self.template["Resources"].items():
            if kind is not None and resource["Type"] != kind:
                continue
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            found[logical_id] = {**resource, "Properties": self.resolve(resource.get("Properties", {}))}
        return found

    def resource(self, logical_id: str) -> dict[str, Any]:
        return self.resources()[logical_id]

    @property
    def function(self) -> dict[str, Any]:
        return self.resource("EdgeRouterFunction")["Properties"]

    @property
    def env(self) -> dict[str, str]:
        variables: dict[str, str] = self.function["Environment"]["Variables"]
        return variables

    def statements(self) -> list[dict[str, Any]]:
        """Every IAM statement any role or policy of the stack grants."""
        found: list[dict[str, Any]] = []
        for resource in self.resources("AWS::IAM::Role").values():
            for policy in resource["Properties"].get("Policies", []):
                found.extend(policy["PolicyDocument"]["Statement"])
        for resource in self.resources("AWS::IAM::Policy").values():
            found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
        return found

    def grants(self) -> set[tuple[str, str]]:
        """(action, resource) pairs, one per action and resource of every statement."""
        return {
            (action, resource)
            for statement in self.statements()
            for action in _listed(statement["Action"])
            for resource in _listed(statement["Resource"])
        }


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def stacks(documents: dict[str, dict[str, Any]]) -> dict[str, Stack]:
    return {name: Stack(documents[name]["translated"], CASES[name][1]) for name in CASES}


def stack_with(documents: dict[str, dict[str, Any]], **parameters: str) -> Stack:
    """The default translation evaluated with other parameter values (what the translator leaves
    to CloudFormation; AliasName, which it resolves itself, is not varied this way)."""
    assert "AliasName" not in parameters
    return Stack(documents["defaults"]["translated"], parameters)


# --- what the code calls ------------------------------------------------------------------------

_CALLS = {
    "get_item": "GetItem",
    "batch_get_item": "BatchGetItem",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "query": "Query",
    "scan": "Scan",
    "batch_write_item": "BatchWriteItem",
    "transact_write_items": "TransactWriteItems",
    "transact_get_items": "TransactGetItems",
}


@cache
def dynamodb_actions(module: str) -> frozenset[str]:
    """The DynamoDB actions `module` (under src/edge_router) calls: boto3 method calls in its code."""
    code = (SRC / module).read_text(encoding="utf-8")
    called = re.findall(r"\.(" + "|".join(_CALLS) + r")\(", code)
    return frozenset(f"dynamodb:{_CALLS[name]}" for name in called)


# --- the function's environment -----------------------------------------------------------------


def test_the_defaults_set_the_config_parameters_name_and_powertools(stacks: dict[str, Stack]) -> None:
    env = stacks["defaults"].env
    assert env == {
        "EDGE_ROUTER_CONFIG": "ssm:/edge-router/config",  # the NAME, never the logical id
        "CONFIG_TTL_SECONDS": "300",
        "REQUEST_TIMEOUT_MS": "25000",
        "POWERTOOLS_SERVICE_NAME": STACK,
        "POWERTOOLS_METRICS_NAMESPACE": "EdgeRouter",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def test_every_feature_sets_the_variable_the_code_reads(stacks: dict[str, Stack]) -> None:
    env = stacks["everything"].env
    assert env["EDGE_ROUTER_CONFIG"] == "dynamodb:edge-router-config/main"
    assert env["BACKENDS_TABLE"] == "edge-router-backends"
    assert env["STATE_TABLE"] == "<StateTable>"
    assert env["ADMIN_KEY_SOURCE"] == f"secretsmanager:{SECRET_ARN}"
    assert env["POWERTOOLS_SERVICE_NAME"] == "edge-router-prod"
    assert env["POWERTOOLS_LOG_LEVEL"] == "WARNING"
    assert stacks["admin-key-in-ssm"].env["ADMIN_KEY_SOURCE"] == "ssm:/edge-router/admin-key"
    for stack in stacks.values():
        assert "ADMIN_KEY" not in stack.env or stack is stacks["local"], "a plain admin key is readable"
        assert "LOG_LEVEL" not in stack.env, "Powertools reads POWERTOOLS_LOG_LEVEL"


def test_every_variable_the_templates_set_is_read_by_the_router_or_powertools(
    stacks: dict[str, Stack],
) -> None:
    code = "\n".join(path.read_text(encoding="utf-8") for path in SRC.rglob("*.py"))
    for name, stack in stacks.items():
        for variable in stack.env:
            assert variable.startswith(("POWERTOOLS_", "AWS_")) or f'"{variable}"' in code, (
                f"{name}: {variable} is set but nothing reads it (a typo?)"
            )


# --- IAM ----------------------------------------------------------------------------------------

# Actions AWS grants on "*" only (no resource-level permissions): the template may use "*" for
# these and nothing else.
STAR_ONLY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


@pytest.mark.parametrize("case", [name for name in CASES if name != "local"])
def test_every_statement_names_its_resources(stacks: dict[str, Stack], case: str) -> None:
    stack = stacks[case]
    roles = stack.resources("AWS::IAM::Role")
    assert list(roles) == ["EdgeRouterRole"], "SAM must not generate a role of its own"
    assert "ManagedPolicyArns" not in roles["EdgeRouterRole"]["Properties"], "managed policies grant on *"
    assert stack.function["Role"] == "<EdgeRouterRole.Arn>"
    for statement in stack.statements():
        assert statement["Effect"] == "Allow"
        resources = _listed(statement["Resource"])
        if "*" in resources:
            assert set(_listed(statement["Action"])) <= STAR_ONLY_ACTIONS, statement
            continue
        for resource in resources:
            assert re.fullmatch(r"<\w+\.Arn>", resource) or (
                resource.startswith("arn:aws:") and f":{ACCOUNT}:" in resource and "*" not in resource
            ), f"{resource!r} is not one specific resource ({statement['Sid']})"


def test_the_defaults_grant_logs_and_the_config_parameter_only(stacks: dict[str, Stack]) -> None:
    assert stacks["defaults"].grants() == {
        ("logs:CreateLogStream", "<EdgeRouterLogGroup.Arn>"),
        ("logs:PutLogEvents", "<EdgeRouterLogGroup.Arn>"),
        ("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/edge-router/config"),
    }


def test_everything_grants_exactly_the_calls_the_code_makes(stacks: dict[str, Stack]) -> None:
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
    config_reads = dynamodb_actions("config/sources.py")
    registry = dynamodb_actions("routing/registry/dynamodb.py")
    state = dynamodb_actions("resilience/dynamodb_store.py")
    assert config_reads == {"dynamodb:GetItem"} and registry and state
    expected = {
        ("logs:CreateLogStream", "<EdgeRouterLogGroup.Arn>"),
        ("logs:PutLogEvents", "<EdgeRouterLogGroup.Arn>"),
        *((action, f"{table}/edge-router-config") for action in config_reads),
        *((action, f"{table}/edge-router-backends") for action in registry),
        *((action, "<StateTable.Arn>") for action in state),
        *(("lambda:InvokeFunction", arn) for arn in LAMBDA_TARGETS),
        ("secretsmanager:GetSecretValue", SECRET_ARN),
        ("kms:Decrypt", KMS_KEY_ARN),
        *((action, "*") for action in STAR_ONLY_ACTIONS),
    }
    stack = stacks["everything"]
    assert stack.grants() == expected
    by_sid = {statement["Sid"]: statement for statement in stack.statements()}
    # the config item alone, the router's own items of the state table alone
    assert by_sid["ReadConfigItem"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["main"]}
    }
    assert by_sid["SharedState"]["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["er#*"]}
    }
    assert by_sid["DecryptAdminKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    }


def test_an_admin_key_in_ssm_is_read_and_decrypted_through_ssm_only(stacks: dict[str, Stack]) -> None:
    stack = stacks["admin-key-in-ssm"]
    parameters = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
    assert stack.grants() - stacks["defaults"].grants() == {
        ("ssm:GetParameter", f"{parameters}/edge-router/admin-key"),
        ("kms:Decrypt", KMS_KEY_ARN),
    }
    decrypt = next(s for s in stack.statements() if s["Sid"] == "DecryptAdminKey")
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}}
    # the AWS managed key (no AdminKeyKmsKeyArn): its key policy already allows it, nothing is granted
    without_key = Stack(stack.template, {"AdminKeyParameterName": "/edge-router/admin-key"})
    assert {action for action, _ in without_key.grants()} == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameter",
    }


# --- the config change signal ------------------------------------------------------------------


def _invoke_permissions(stack: Stack) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"].get("SourceArn", "(none)"): resource["Properties"]
        for resource in stack.resources("AWS::Lambda::Permission").values()
        if resource["Properties"]["Principal"] == "events.amazonaws.com"
    }


def test_a_change_of_the_config_parameter_invokes_the_router_and_nothing_else_does(
    stacks: dict[str, Stack], documents: dict[str, dict[str, Any]]
) -> None:
    stack = stacks["ssm-with-state-table"]
    rule = stack.resource("ConfigChangeRule")["Properties"]
    # SSM's own event for exactly this parameter's writes: not a Delete, a label, another parameter
    assert rule["EventPattern"] == {
        "source": ["aws.ssm"],
        "detail-type": ["Parameter Store Change"],
        "detail": {"name": ["/edge-router/config"], "operation": ["Create", "Update"]},
    }
    assert rule["State"] == "ENABLED"
    assert "EventBusName" not in rule, "SSM sends its events to the default bus"
    (target,) = rule["Targets"]
    assert target["Arn"] == "<EdgeRouterFunctionAliaslive>", "the alias, as the URL and the schedule"
    assert set(target) == {"Id", "Arn"}, "the event itself is the input (no transformer)"
    # invoked by EventBridge for this rule only, on the alias only
    assert _invoke_permissions(stack)["<ConfigChangeRule.Arn>"] == {
        "FunctionName": "<EdgeRouterFunctionAliaslive>",
        "Action": "lambda:InvokeFunction",
        "Principal": "events.amazonaws.com",
        "SourceArn": "<ConfigChangeRule.Arn>",
    }
    other = stack_with(documents, EnableStateTable="true", ConfigParameterName="/edge-router/other")
    assert other.resource("ConfigChangeRule")["Properties"]["EventPattern"]["detail"]["name"] == [
        "/edge-router/other"
    ]
    # no rule without an SSM parameter (a DynamoDB item carries its own version) or without the
    # state table (nothing to bump: the instances' TTL is all there is)
    for without in (
        stacks["defaults"],
        stacks["everything"],
        stack_with(documents, EnableStateTable="true", ConfigTableName="edge-router-config"),
    ):
        assert "ConfigChangeRule" not in without.resources()
        assert "<ConfigChangeRule.Arn>" not in _invoke_permissions(without)
        assert "BumpConfigVersion" not in {statement["Sid"] for statement in without.statements()}


def test_the_change_signal_may_update_the_version_item_and_nothing_else(stacks: dict[str, Stack]) -> None:
    from edge_router.aws.config_version import VERSION_ITEM

    stack = stacks["ssm-with-state-table"]
    state = dynamodb_actions("resilience/dynamodb_store.py")
    version_calls = dynamodb_actions("aws/config_version.py")
    assert version_calls == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    # the defaults, the shared state, and UpdateItem on the state table: nothing more
    assert stack.grants() - stacks["defaults"].grants() == {
        *((action, "<StateTable.Arn>") for action in state | version_calls)
    }
    by_sid = {statement["Sid"]: statement for statement in stack.statements()}
    # GetItem on the version item is the shared state's (every er# item); it has no UpdateItem
    assert "dynamodb:GetItem" in by_sid["SharedState"]["Action"]
    assert "dynamodb:UpdateItem" not in by_sid["SharedState"]["Action"]
    assert VERSION_ITEM.startswith("er#")
    bump = by_sid["BumpConfigVersion"]
    assert (bump["Action"], bump["Resource"]) == ("dynamodb:UpdateItem", "<StateTable.Arn>")
    # that one item, and only the attributes the bump sets (and its key)
    assert bump["Condition"] == {
        "ForAllValues:StringEquals": {
            "dynamodb:LeadingKeys": [VERSION_ITEM],
            "dynamodb:Attributes": ["id", "version", "source", "updated_at"],
        }
    }
    code = (SRC / "aws" / "config_version.py").read_text(encoding="utf-8")
    assert re.search(r"SET version = :v, #source = :s, updated_at = :t\b", code), (
        "the bump's attributes changed: update BumpConfigVersion's dynamodb:Attributes"
    )


def test_the_rules_refuse_two_admin_key_sources_and_a_lone_kms_key(
    documents: dict[str, dict[str, Any]],
) -> None:
    def rules_hold(**parameters: str) -> bool:
        stack = stack_with(documents, **parameters)
        return all(
            stack.truth(assertion["Assert"])
            for rule in stack.template["Rules"].values()
            for assertion in rule["Assertions"]
        )

    assert rules_hold()
    assert rules_hold(AdminKeySecretArn=SECRET_ARN, AdminKeyKmsKeyArn=KMS_KEY_ARN)
    assert rules_hold(AdminKeyParameterName="/edge-router/admin-key")
    assert not rules_hold(AdminKeySecretArn=SECRET_ARN, AdminKeyParameterName="/edge-router/admin-key")
    assert not rules_hold(AdminKeyKmsKeyArn=KMS_KEY_ARN)


# --- the function URL, the alias and versions ---------------------------------------------------


@pytest.mark.parametrize(("case", "alias"), [("defaults", "live"), ("everything", "prod")])
def test_the_public_url_permissions_follow_the_url_onto_the_alias(
    stacks: dict[str, Stack], case: str, alias: str
) -> None:
    stack = stacks[case]
    alias_id = f"EdgeRouterFunctionAlias{alias}"
    assert stack.resource(alias_id)["Properties"]["Name"] == alias
    url = stack.resource("EdgeRouterFunctionUrl")["Properties"]
    assert url["TargetFunctionArn"] == f"<{alias_id}>" and url["AuthType"] == "NONE"
    public = {
        logical_id: resource["Properties"]
        for logical_id, resource in stack.resources("AWS::Lambda::Permission").items()
        if resource["Properties"]["Principal"] == "*"
    }
    assert {(p["Action"], p["FunctionName"]) for p in public.values()} == {
        ("lambda:InvokeFunctionUrl", f"<{alias_id}>"),
        ("lambda:InvokeFunction", f"<{alias_id}>"),
    }, "a permission on the unqualified function lets no request of the alias's URL in (403)"
    by_action = {p["Action"]: p for p in public.values()}
    assert by_action["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert by_action["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
    schedule = stack.resource("EdgeRouterFunctionHealthTick")["Properties"]
    assert schedule["Targets"][0]["Arn"] == f"<{alias_id}>"


def test_an_iam_url_has_no_public_permission(stacks: dict[str, Stack]) -> None:
    stack = stacks["iam-auth-no-alarms"]
    assert stack.resource("EdgeRouterFunctionUrl")["Properties"]["AuthType"] == "AWS_IAM"
    assert all(
        resource["Properties"]["Principal"] != "*"
        for resource in stack.resources("AWS::Lambda::Permission").values()
    )


def test_the_url_is_buffered_without_cors_and_the_upstream_timeout_fits_the_functions(
    documents: dict[str, dict[str, Any]],
) -> None:
    raw = documents["defaults"]["raw"]
    function = raw["Resources"]["EdgeRouterFunction"]["Properties"]
    assert function["FunctionUrlConfig"]["InvokeMode"] == "BUFFERED"  # Mangum answers whole responses
    assert "Cors" not in function["FunctionUrlConfig"], "CORS is the router's (config `cors`), in one place"
    # an upstream attempt ends before the invocation does, so a slow backend gets the router's 504
    timeout_ms = raw["Parameters"]["RequestTimeoutMs"]
    assert max(int(timeout_ms["Default"]), int(timeout_ms["MaxValue"])) < function["Timeout"] * 1000


# Another valid value for every parameter of template.yaml (a new parameter must be added here).
ALTERNATIVES = {
    "FunctionUrlAuthType": "AWS_IAM",
    "MemorySize": "2048",
    "ReservedConcurrency": "10",
    "Tracing": "Active",
    "EnableSnapStart": "true",
    "LogLevel": "DEBUG",
    "LogRetentionDays": "90",
    "ServiceName": "edge-router-blue",
    "ConfigParameterName": "/edge-router/other",
    "InitialConfig": '{"routes": []}',
    "ConfigTableName": "edge-router-config",
    "ConfigItemId": "other",
    "ConfigTtlSeconds": "60",
    "RequestTimeoutMs": "10000",
    "BackendsTableName": "edge-router-backends",
    "EnableStateTable": "true",
    "ScheduleEnabled": "true",
    "ScheduleExpression": "rate(5 minutes)",
    "LambdaTargetArns": f"{FN}:orders",
    "AdminKeySecretArn": SECRET_ARN,
    "AdminKeyParameterName": "/edge-router/admin-key",
    "AdminKeyKmsKeyArn": KMS_KEY_ARN,
    "EnableAlarms": "false",
    "AlarmTopicArn": TOPIC_ARN,
    "Url5xxAlarmThreshold": "3",
    "UpstreamErrorsAlarmThreshold": "3",
    "LatencyP99AlarmMs": "900",
}
# Function settings that are not part of a published version.
UNVERSIONED = {"ReservedConcurrentExecutions"}


def _versioned(stack: Stack) -> dict[str, Any]:
    return {key: value for key, value in stack.function.items() if key not in UNVERSIONED}


def _version_description(stack: Stack) -> str:
    (version,) = stack.resources("AWS::Lambda::Version").values()
    assert version["DeletionPolicy"] == "Retain", "a rollback needs the earlier versions"
    description: str = version["Properties"]["Description"]
    return description


def test_a_parameter_change_publishes_a_version_exactly_when_the_function_changes(
    documents: dict[str, dict[str, Any]],
) -> None:
    """SAM names the version after a hash of the properties taken before parameter values are
    filled in, so a parameter alone never renames it; the version's Description (replaced when it
    changes) must change exactly when the function's configuration does: else the alias keeps the
    old settings, or CloudFormation fails on a version with nothing new to publish."""
    template = documents["defaults"]["translated"]
    assert set(ALTERNATIVES) | {"AliasName"} == set(template["Parameters"])
    base = stack_with(documents)
    for name, value in ALTERNATIVES.items():
        other = stack_with(documents, **{name: value})
        function_changed = _versioned(other) != _versioned(base)
        description_changed = _version_description(other) != _version_description(base)
        assert function_changed == description_changed, (name, function_changed, description_changed)


def test_the_version_description_fits_lambdas_limit(stacks: dict[str, Stack]) -> None:
    long_names = {
        **EVERYTHING,
        "ConfigTableName": "",
        "ConfigParameterName": "/edge-router/production/eu-central-1/config",
        "BackendsTableName": "edge-router-production-backends",
        "AdminKeySecretArn": (
            "arn:aws:secretsmanager:eu-central-1:123456789012:secret:edge-router/production/admin-key-AbCdEf"
        ),
        "ServiceName": "edge-router-production-eu",
    }
    stack = Stack(stacks["everything"].template, long_names)
    assert len(_version_description(stack)) <= 256


def test_reserved_concurrency_tracing_snapstart_and_logs(stacks: dict[str, Stack]) -> None:
    defaults, everything = stacks["defaults"].function, stacks["everything"].function
    assert "ReservedConcurrentExecutions" not in defaults
    assert everything["ReservedConcurrentExecutions"] == "50"
    assert defaults["TracingConfig"] == {"Mode": "PassThrough"}
    assert everything["TracingConfig"] == {"Mode": "Active"}
    assert defaults["SnapStart"] == {"ApplyOn": "None"}
    assert everything["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert defaults["Runtime"] == "python3.12"  # SnapStart needs 3.12 or later
    for stack in (stacks["defaults"], stacks["everything"]):
        assert stack.function["LoggingConfig"] == {"LogGroup": "<EdgeRouterLogGroup>", "LogFormat": "Text"}
        assert stack.resource("EdgeRouterLogGroup")["Properties"]["RetentionInDays"] == "30"


# --- what outlives the stack --------------------------------------------------------------------


def test_the_config_parameter_and_the_state_table_are_retained(stacks: dict[str, Stack]) -> None:
    parameter = stacks["defaults"].resource("EdgeRouterConfigParameter")
    assert parameter["DeletionPolicy"] == parameter["UpdateReplacePolicy"] == "Retain"
    assert parameter["Properties"]["Name"] == "/edge-router/config"
    assert "StateTable" not in stacks["defaults"].resources()
    table = stacks["everything"].resource("StateTable")
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["Properties"]["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
    # a DynamoDB config source replaces the SSM parameter: none is created (nor read)
    assert "EdgeRouterConfigParameter" not in stacks["everything"].resources()


# --- alarms -------------------------------------------------------------------------------------


def test_the_alarms_watch_the_url_throttles_upstream_errors_and_p99_latency(stacks: dict[str, Stack]) -> None:
    alarms = {
        (p["Namespace"], p["MetricName"]): p
        for p in (r["Properties"] for r in stacks["everything"].resources("AWS::CloudWatch::Alarm").values())
    }
    assert set(alarms) == {
        ("AWS/Lambda", "Url5xxCount"),
        ("AWS/Lambda", "Throttles"),
        ("EdgeRouter", "UpstreamErrors"),
        ("EdgeRouter", "Latency"),
    }
    for (namespace, _), alarm in alarms.items():
        expected = (
            [{"Name": "FunctionName", "Value": "<EdgeRouterFunction>"}]
            if namespace == "AWS/Lambda"
            else [{"Name": "service", "Value": "edge-router-prod"}]  # POWERTOOLS_SERVICE_NAME
        )
        assert alarm["Dimensions"] == expected
        assert alarm["AlarmActions"] == alarm["OKActions"] == [TOPIC_ARN]
    assert alarms[("EdgeRouter", "Latency")]["ExtendedStatistic"] == "p99"
    assert all("AlarmActions" not in r["Properties"] for r in stacks["defaults"].resources().values())
    assert not stacks["iam-auth-no-alarms"].resources("AWS::CloudWatch::Alarm")


# --- API Gateway: only in the local overlay -----------------------------------------------------


def _api_gateway(stack: Stack) -> list[str]:
    return [r["Type"] for r in stack.resources().values() if r["Type"].startswith("AWS::ApiGateway")]


def test_template_yaml_creates_no_api_gateway(
    stacks: dict[str, Stack], documents: dict[str, dict[str, Any]]
) -> None:
    for case in CASES:
        if case != "local":
            assert _api_gateway(stacks[case]) == [], case
    events = documents["defaults"]["raw"]["Resources"]["EdgeRouterFunction"]["Properties"]["Events"]
    assert {event["Type"] for event in events.values()} == {"Schedule"}


def test_the_local_overlay_serves_every_path_through_an_http_api(
    stacks: dict[str, Stack], documents: dict[str, dict[str, Any]]
) -> None:
    raw = documents["local"]["raw"]
    events = raw["Resources"]["EdgeRouterFunction"]["Properties"]["Events"]
    assert {
        (
            e["Type"],
            e["Properties"]["Path"],
            e["Properties"]["Method"],
            e["Properties"]["PayloadFormatVersion"],
        )
        for e in events.values()
    } == {("HttpApi", "/", "ANY", "2.0"), ("HttpApi", "/{proxy+}", "ANY", "2.0")}
    assert "AWS::ApiGatewayV2::Api" in _api_gateway(stacks["local"])
    # and CloudFormation refuses to deploy it: its one rule can never hold
    local = stacks["local"]
    (rule,) = local.template["Rules"].values()
    assert local.template["Parameters"]["LocalOnly"]["AllowedValues"] == ["true"]
    assert not local.truth(rule["Assertions"][0]["Assert"])


def test_the_local_overlay_runs_the_same_function(documents: dict[str, dict[str, Any]]) -> None:
    main, local = (documents[case]["raw"]["Resources"] for case in ("defaults", "local"))
    main_layer, local_layer = (
        main["EdgeRouterDepsLayer"]["Properties"],
        local["EdgeRouterDepsLayer"]["Properties"],
    )
    for key in ("CodeUri", "Handler", "Runtime", "Architectures", "Timeout"):
        assert (
            local["EdgeRouterFunction"]["Properties"][key] == main["EdgeRouterFunction"]["Properties"][key]
        ), key
    for logical_id in ("EdgeRouterFunction", "EdgeRouterDepsLayer"):
        assert local[logical_id]["Metadata"] == main[logical_id]["Metadata"], logical_id
    for key in ("ContentUri", "CompatibleRuntimes", "CompatibleArchitectures"):
        assert local_layer[key] == main_layer[key], key
    # every variable the deployed function may get can be set locally (`--env-vars` only
    # overrides declared ones), and the emulator's endpoint too
    main_variables = set(main["EdgeRouterFunction"]["Properties"]["Environment"]["Variables"])
    local_variables = set(local["EdgeRouterFunction"]["Properties"]["Environment"]["Variables"])
    assert main_variables | {"AWS_ENDPOINT_URL", "ADMIN_KEY"} <= local_variables


# --- the build ----------------------------------------------------------------------------------


def test_function_and_layer_are_built_by_their_makefiles(documents: dict[str, dict[str, Any]]) -> None:
    resources = documents["defaults"]["raw"]["Resources"]
    for logical_id, code_key in (("EdgeRouterFunction", "CodeUri"), ("EdgeRouterDepsLayer", "ContentUri")):
        assert resources[logical_id]["Metadata"]["BuildMethod"] == "makefile"
        makefile = ROOT / resources[logical_id]["Properties"][code_key] / "Makefile"
        text = makefile.read_text(encoding="utf-8")
        assert re.search(rf"^build-{logical_id}:", text, re.MULTILINE), makefile
        assert "compileall" in text and "--invalidation-mode unchecked-hash" in text
        assert "PYTHON312 ?= python3.12" in text
    layer_dir = ROOT / resources["EdgeRouterDepsLayer"]["Properties"]["ContentUri"]
    layer = (layer_dir / "Makefile").read_text(encoding="utf-8")
    assert "--python-version $(LAMBDA_PYTHON_VERSION)" in layer and "LAMBDA_PYTHON_VERSION = 3.12" in layer
    assert "--only-binary=:all:" in layer and "LAMBDA_ARCH = aarch64" in layer
    assert resources["EdgeRouterFunction"]["Properties"]["Architectures"] == ["arm64"]


def _requirements(lines: list[str]) -> dict[str, set[str]]:
    """name -> the set of its version clauses (`>=0.21`, `<0.23`)."""
    found: dict[str, set[str]] = {}
    for line in (line.split("#", 1)[0].strip() for line in lines):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:\[[^]]*\])?\s*(.*)", line)
        if line:
            assert match, line
            key = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            found[key] = {clause.replace(" ", "") for clause in match.group(2).split(",") if clause.strip()}
    return found


def test_the_layer_requirements_are_in_step_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = _requirements(project["dependencies"])
    layer = _requirements(LAYER_REQUIREMENTS.read_text(encoding="utf-8").splitlines())
    assert set(layer) == set(wanted), "the layer is the package's runtime dependencies, no more, no less"
    for name, clauses in wanted.items():
        assert clauses <= layer[name], f"{name}: the layer must keep pyproject's bounds {sorted(clauses)}"
