"""ApacheKafkaCluster's SASL/SCRAM option without a JVM: server.properties, format arguments, client settings."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from reviews_mtl.stack import apache_kafka
from reviews_mtl.stack.apache_kafka import ApacheKafkaCluster, ApacheKafkaError

ADMIN_PW = "adm-Secret-1"
WORKER_PW = "wrk-Secret-2"
USERS = {"admin": ADMIN_PW, "worker": WORKER_PW}


def test_plaintext_by_default(tmp_path: Path) -> None:
    cluster = ApacheKafkaCluster(tmp_path, 1)
    props = cluster.properties(1)
    assert props["listeners"].startswith("PLAINTEXT://")
    assert not any(key.startswith("sasl.") for key in props)
    assert cluster.security_protocol == "PLAINTEXT"
    assert cluster.client_settings().security_protocol == "PLAINTEXT"


def test_sasl_users_make_a_scram_listener(tmp_path: Path) -> None:
    cluster = ApacheKafkaCluster(tmp_path, 3, sasl_users=USERS, sasl_mechanism="SCRAM-SHA-512")
    node = cluster.node(2)
    props = cluster.properties(2)
    assert props["listeners"] == (
        f"SASL_PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
    )
    assert props["advertised.listeners"] == f"SASL_PLAINTEXT://127.0.0.1:{node.port}"
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    jaas = props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert 'username="admin"' in jaas and f'password="{ADMIN_PW}"' in jaas
    assert WORKER_PW not in "".join(props.values())  # only the inter-broker user is in the broker's config
    assert "authorizer.class.name" not in props


def test_client_settings_per_user(tmp_path: Path) -> None:
    cluster = ApacheKafkaCluster(tmp_path, 1, sasl_users=USERS)
    assert cluster.security_protocol == "SASL_PLAINTEXT"
    admin = cluster.client_settings()
    assert admin.sasl_username == "admin" and admin.bootstrap_servers == cluster.bootstrap_servers
    conf = cluster.client_settings("worker").as_librdkafka_dict()
    assert conf["security.protocol"] == "sasl_plaintext"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-256"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("worker", WORKER_PW)
    assert WORKER_PW not in repr(cluster.client_settings("worker"))
    with pytest.raises(KeyError):
        cluster.client_settings("nobody")


@pytest.mark.parametrize(
    ("users", "admin"),
    [
        ({"worker": "pw"}, "admin"),  # the inter-broker user must exist
        ({"admin": "pa,ss"}, "admin"),  # --add-scram splits on commas
        ({"admin": 'pa"ss'}, "admin"),  # the JAAS line quotes with "
        ({"admin": ""}, "admin"),
        ({"ad min": "pw"}, "ad min"),
    ],
)
def test_unusable_users_are_rejected_without_echoing_the_password(users: dict[str, str], admin: str) -> None:
    with pytest.raises(ValueError) as info:
        ApacheKafkaCluster(Path("/nonexistent"), 1, sasl_users=users, sasl_admin=admin)
    for password in users.values():
        if password:
            assert password not in str(info.value)


def test_format_adds_every_scram_user_and_redacts_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = ApacheKafkaCluster(tmp_path, 1, sasl_users=USERS)
    cluster._libs = tmp_path
    monkeypatch.setattr(apache_kafka, "_java", lambda: "java")
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, stdout="", stderr=f"bad credential {ADMIN_PW} {WORKER_PW}")

    monkeypatch.setattr(subprocess, "run", fake_run)  # the module calls subprocess.run
    node = cluster.node(1)
    cluster._write_config(node)
    with pytest.raises(ApacheKafkaError) as info:
        cluster._format(node)
    argv = calls[0]
    assert argv[argv.index("kafka.tools.StorageTool") + 1] == "format"
    scram = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--add-scram"]
    assert scram == [
        f"SCRAM-SHA-256=[name=admin,password={ADMIN_PW}]",
        f"SCRAM-SHA-256=[name=worker,password={WORKER_PW}]",
    ]
    assert ADMIN_PW not in str(info.value) and WORKER_PW not in str(info.value)
    assert "bad credential ***" in str(info.value)
