"""Settings: librdkafka rendering (PLAINTEXT, SASL, SSL), environment variables, secrets kept out of repr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from reviews_mtl.kafka import client_config
from reviews_mtl.settings import (
    ConsumerSettings,
    KafkaSettings,
    ProducerSettings,
    RedisSettings,
    StackSettings,
    TopicSettings,
)

SECRET = "s3cr3t-value-xyz"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read the environment: a developer's KAFKA_* must not leak into these expectations.
    import os

    for name in list(os.environ):
        if name.startswith(("KAFKA_", "REDIS_", "REVIEWS_")):
            monkeypatch.delenv(name)


def test_plaintext_renders_only_connection_keys() -> None:
    conf = KafkaSettings(bootstrap_servers="b1:9092,b2:9092").as_librdkafka_dict()
    assert conf == {
        "bootstrap.servers": "b1:9092,b2:9092",
        "client.id": "reviews-mtl",
        "security.protocol": "plaintext",
    }


def test_sasl_ssl_renders_every_option() -> None:
    settings = KafkaSettings(
        bootstrap_servers="kafka.example:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc-reviews",
        sasl_password=SecretStr(SECRET),
        ssl_ca_location=Path("/etc/ssl/ca.pem"),
        ssl_certificate_location=Path("/etc/ssl/client.pem"),
        ssl_key_location=Path("/etc/ssl/client.key"),
        ssl_key_password=SecretStr("key-" + SECRET),
        ssl_endpoint_identification=False,
    )
    conf = settings.as_librdkafka_dict()
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "svc-reviews"
    assert conf["sasl.password"] == SECRET
    assert conf["ssl.ca.location"] == "/etc/ssl/ca.pem"
    assert conf["ssl.certificate.location"] == "/etc/ssl/client.pem"
    assert conf["ssl.key.location"] == "/etc/ssl/client.key"
    assert conf["ssl.key.password"] == "key-" + SECRET
    assert conf["ssl.endpoint.identification.algorithm"] == "none"


def test_sasl_plaintext_has_no_ssl_keys() -> None:
    conf = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u", sasl_password=SecretStr("p")
    ).as_librdkafka_dict()
    assert conf["security.protocol"] == "sasl_plaintext"
    assert not any(key.startswith("ssl.") for key in conf)


def test_ssl_defaults_to_hostname_verification() -> None:
    conf = KafkaSettings(security_protocol="SSL").as_librdkafka_dict()
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert not any(key.startswith("sasl.") for key in conf)


def test_sasl_without_mechanism_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_MECHANISM"):
        KafkaSettings(security_protocol="SASL_SSL").as_librdkafka_dict()


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(security_protocol="KERBEROS")  # type: ignore[arg-type]


def test_environment_variables_configure_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env-broker:9094")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "alice")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    conf = KafkaSettings().as_librdkafka_dict()
    assert conf["bootstrap.servers"] == "env-broker:9094"
    assert conf["sasl.password"] == SECRET


def test_secrets_never_appear_in_repr_or_str() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        sasl_password=SecretStr(SECRET),
        ssl_key_password=SecretStr(SECRET),
    )
    redis = RedisSettings(url=SecretStr(f"redis://:{SECRET}@cache:6379/0"), password=SecretStr(SECRET))
    for rendered in (
        repr(kafka),
        str(kafka),
        repr(redis),
        str(redis),
        kafka.model_dump_json(),
        redis.model_dump_json(),
    ):
        assert SECRET not in rendered
    assert "alice" in repr(kafka)  # the user name is not a secret and helps debugging


def test_secrets_stay_out_of_logged_client_config(caplog: pytest.LogCaptureFixture) -> None:
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_password=SecretStr(SECRET))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings %r", kafka)
    assert SECRET not in caplog.text


def test_client_config_reads_underscores_as_dots_and_extra_wins() -> None:
    conf = client_config(
        KafkaSettings(client_id="base"),
        client_id="override",
        transactional_id="tx-1",
        **{"isolation.level": "read_committed"},
    )
    assert conf["client.id"] == "override"
    assert conf["transactional.id"] == "tx-1"
    assert conf["isolation.level"] == "read_committed"
    assert isinstance(conf["logger"], logging.Logger)


def test_client_config_keeps_python_callback_names() -> None:
    def on_error(err: object) -> None:
        pass

    conf = client_config(KafkaSettings(), error_cb=on_error, stats_cb=on_error)
    assert conf["error_cb"] is on_error and conf["stats_cb"] is on_error
    assert "error.cb" not in conf


def test_producer_settings_are_idempotent_with_acks_all() -> None:
    conf = ProducerSettings().as_librdkafka_dict()
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"


def test_settings_are_frozen_and_validated() -> None:
    topics = TopicSettings()
    with pytest.raises(ValidationError):
        topics.partitions = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        TopicSettings(partitions=0)
    with pytest.raises(ValidationError):
        StackSettings(kafka_port=70000)
    assert ConsumerSettings().group_id == "reviews-mtl"


def test_stack_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REVIEWS_STACK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("REVIEWS_STACK_KAFKA_PORT", "19092")
    settings = StackSettings()
    assert settings.state_dir == tmp_path
    assert settings.kafka_port == 19092
    assert StackSettings.model_fields["state_dir"].default == Path(".reviews-mtl/stack")
