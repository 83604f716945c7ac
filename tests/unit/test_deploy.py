"""deploy/: every file parses, the shipped configs validate, the manifests keep their promises."""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from ingest.config_load import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOT = DEPLOY.parent


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s() -> list[dict[str, Any]]:
    """The cluster objects (kustomization.yaml is kustomize's own file, not one of them)."""
    files = sorted(p for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")
    return [d for p in files for d in _docs(p)]


def _kind(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _k8s() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


@pytest.mark.parametrize(
    "path",
    sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml", ".json")),
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_every_yaml_and_json_file_parses(path: Path) -> None:
    """Each YAML (all documents) and JSON file under deploy/ is well-formed and not empty."""
    docs = [json.loads(path.read_text())] if path.suffix == ".json" else _docs(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_the_example_and_compose_configs_validate_with_ingests_loader() -> None:
    """config.example.yaml and the compose config (with its accounts.d) load without error."""
    assert [a.name for a in load_settings(DEPLOY / "config.example.yaml").accounts] == ["support"]
    compose = load_settings(DEPLOY / "compose" / "config.yaml")
    assert [a.name for a in compose.accounts] == ["support"]
    assert compose.accounts[0].password_file == Path("/run/secrets/support_pop3_password")
    assert compose.redis_url == "redis://redis:6379/0"


def test_the_kubernetes_configmaps_validate_with_ingests_loader(tmp_path: Path) -> None:
    """The ConfigMaps, laid out as the pods mount them, load; every password comes from the
    Secret through secretKeyRef in both Deployments."""
    config = yaml.safe_load(_kind("ConfigMap", "ingest-config")["data"]["config.yaml"])
    assert config["accounts_dir"] == "/etc/ingest/accounts.d"  # the worker's mount path
    accounts = tmp_path / "accounts.d"
    accounts.mkdir()
    for name, text in _kind("ConfigMap", "ingest-accounts")["data"].items():
        (accounts / name).write_text(text)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "accounts_dir": "accounts.d"}))
    settings = load_settings(tmp_path / "config.yaml")
    assert sorted(a.name for a in settings.accounts) == ["billing", "support"]
    for name in ("ingest-worker", "ingest-beat"):
        (container,) = _kind("Deployment", name)["spec"]["template"]["spec"]["containers"]
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
        }
        for account in settings.accounts:
            assert refs[account.password_env or ""]["name"] == "ingest-secrets"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(refs)
        plain = {e["name"] for e in container["env"] if "value" in e}
        assert not {n for n in plain if re.search("PASSWORD|SECRET|TOKEN|KEY", n)}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/etc/ingest/config", "/etc/ingest/accounts.d"} <= mounts
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["INGEST_CONFIG"] == "/etc/ingest/config/config.yaml"


def test_compose_runs_redis_safely_and_every_service() -> None:
    """Redis keeps an AOF and never evicts; worker, beat, Flower and MinIO are there."""
    services = _compose()["services"]
    assert {"redis", "minio", "worker", "beat", "flower"} <= set(services)
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert services["beat"]["deploy"]["replicas"] == 1
    assert services["worker"]["command"][:2] == ["ingest", "worker"]
    assert services["beat"]["command"] == ["ingest", "beat"]
    for name in ("worker", "beat"):
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert "./compose:/etc/ingest:ro" in service["volumes"]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    for service in services.values():
        if "image" in service and not service["image"].startswith("ingest:"):
            assert not service["image"].endswith(":latest") and ":" in service["image"]


def test_kubernetes_objects_are_complete_and_pods_run_as_non_root() -> None:
    """Every object has apiVersion, kind and a name; beat is single and Recreate; pods are
    non-root with a read-only root and probes; the HPA scales the worker."""
    objects = _k8s()
    assert all(d.get("apiVersion") and d.get("kind") and d["metadata"].get("name") for d in objects)
    beat = _kind("Deployment", "ingest-beat")["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    for deployment in (d for d in objects if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"]
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert container["livenessProbe"]["exec"]["command"][:2] == ["ingest", "health"]
    worker = _kind("Deployment", "ingest-worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["readinessProbe"]["exec"]["command"] == ["ingest", "health", "--ready"]
    hpa = _kind("HorizontalPodAutoscaler", "ingest-worker")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "ingest-worker" and hpa["minReplicas"] >= 1
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == files


def test_the_iam_policy_grants_only_what_ingest_uses_on_its_prefix() -> None:
    """Put/Get on the prefix, List limited to it; optional lock, tagging and KMS statements;
    nothing else, no wildcard actions, and the prefix is the one the ConfigMap stores under."""
    policy = json.loads((DEPLOY / "iam" / "bucket-policy.json").read_text())
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert policy["Version"] == "2012-10-17"
    assert all(s["Effect"] == "Allow" for s in statements.values())
    actions = {a for s in statements.values() for a in _list(s["Action"])}
    assert actions == {
        "s3:ListBucket", "s3:PutObject", "s3:GetObject",
        "s3:PutObjectRetention", "s3:GetObjectRetention",
        "s3:PutObjectLegalHold", "s3:GetObjectLegalHold",
        "s3:PutObjectTagging", "s3:GetObjectTagging",
        "kms:GenerateDataKey", "kms:Decrypt",
    }  # fmt: skip
    assert not [s for s in statements.values() if "*" in str(s["Action"])]
    assert {sid for sid in statements if not sid.startswith("Optional")} == {
        "ListOnlyTheIngestPrefix",
        "WriteAndReadMessagesUnderThePrefix",
    }
    config = yaml.safe_load(_kind("ConfigMap", "ingest-config")["data"]["config.yaml"])
    bucket_prefix = config["storage"]["url"].removeprefix("s3://")
    bucket, prefix = bucket_prefix.split("/", 1)
    objects = statements["WriteAndReadMessagesUnderThePrefix"]["Resource"]
    assert objects == f"arn:aws:s3:::{bucket}/{prefix}/*"
    listing = statements["ListOnlyTheIngestPrefix"]
    assert listing["Resource"] == f"arn:aws:s3:::{bucket}"
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"{prefix}/*"]
    minio = json.loads((DEPLOY / "iam" / "minio-policy.json").read_text())
    assert {a for s in minio["Statement"] for a in s["Action"]} <= actions


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_the_dockerfile_is_pinned_non_root_and_checks_health() -> None:
    """A pinned slim base, a numeric non-root USER, the entrypoint and a health check."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    (user,) = re.findall(r"^USER (\S+)$", text, re.M)
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    assert 'ENTRYPOINT ["ingest-entrypoint"]' in text
    assert 'CMD ["ingest", "health", "--live"]' in text
    assert "--constraint constraints.txt" in text


def test_the_image_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    """constraints.txt pins each [project] dependency to a version its range allows."""
    pins = {}
    for line in (DEPLOY / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        version = pins.get(req.name.lower().replace("_", "-"))
        assert version is not None, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(version), f"{req.name}=={version} is outside {spec}"


def test_the_systemd_units_run_the_worker_and_beat_unprivileged() -> None:
    """Both units run `ingest worker` / `ingest beat` as the ingest user, hardened."""
    for kind in ("worker", "beat"):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read(DEPLOY / "systemd" / f"ingest-{kind}.service")
        service = unit["Service"]
        assert f"ingest {kind}" in service["ExecStart"]
        assert service["User"] == "ingest" and service["NoNewPrivileges"] == "true"
