"""An agency's delivery section: parsed into models, every mistake named, secrets never inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from veille.deliver.config import (
    DeliveryConfig,
    DeliveryConfigError,
    SecretUnavailable,
    check_secrets,
    parse_delivery,
)
from veille.deliver.settings import DeliverySettings
from veille.schemas.models import DeliveryMethod

SECTION = """
webhook:
  url: https://sig.montveille.fr/veille/dispatch
  secret: {file: /run/secrets/veille-webhook}
  category_urls: {flood: "https://astreinte.montveille.fr/veille"}
email:
  to: [services.techniques@montveille.fr, astreinte@montveille.fr]
open311:
  base_url: https://gmao.montveille.fr/open311/v2/
  api_key: {env: VEILLE_TEST_OPEN311_KEY}
  service_codes: {broken_streetlight: EP-01, damaged_road: VOI-02}
  request_updates: true
"""


def test_a_full_section_parses_into_models() -> None:
    config = parse_delivery("mairie-35401", yaml.safe_load(SECTION))
    assert config.methods == (DeliveryMethod.kafka, DeliveryMethod.webhook, DeliveryMethod.email,
                              DeliveryMethod.open311)
    assert config.webhook is not None and config.email is not None and config.open311 is not None
    assert config.webhook.url_for("flood") == "https://astreinte.montveille.fr/veille"
    assert config.webhook.url_for("damaged_road") == "https://sig.montveille.fr/veille/dispatch"
    assert config.email.to == ("services.techniques@montveille.fr", "astreinte@montveille.fr")
    assert config.open311.base_url == "https://gmao.montveille.fr/open311/v2"
    assert config.open311.service_code_for("damaged_road") == "VOI-02"
    assert config.open311.service_code_for("flood") is None
    assert not config.webhook.include_reporter_contact  # personal data: opt-in only


@pytest.mark.parametrize("raw", [None, {}, {"kafka": True}])
def test_no_section_is_kafka_only(raw: dict[str, Any] | None) -> None:
    assert parse_delivery("sdis35", raw) == DeliveryConfig()
    assert DeliveryConfig().methods == (DeliveryMethod.kafka,)


def test_one_address_may_be_written_alone() -> None:
    config = parse_delivery("a", {"email": {"to": "voirie@mairie.fr"}})
    assert config.email is not None and config.email.to == ("voirie@mairie.fr",)


@pytest.mark.parametrize(("raw", "expected"), [
    ({"kafka": False}, "delivery.kafka: cannot be turned off"),
    ({"sms": {"to": "0600000000"}}, "delivery.sms: unknown key"),
    ({"webhook": {"url": "ftp://x.fr/h", "secret": {"env": "S"}}},
     "delivery.webhook.url: ftp://x.fr/h: only http and https"),
    ({"webhook": {"url": "https://x.fr", "secret": {"env": "S"}, "category_urls": {"alien": "https://y.fr"}}},
     "delivery.webhook.category_urls: unknown categories: alien"),
    ({"webhook": {"url": "https://x.fr", "secret": {"file": "/a", "env": "B"}}},
     "delivery.webhook.secret: give exactly one of file: PATH or env: VARIABLE"),
    ({"webhook": {"url": "https://x.fr", "secret": {}}}, "give exactly one of"),
    ({"webhook": {"secret": {"env": "S"}}}, "delivery.webhook.url: Field required"),
    ({"email": {"to": []}}, "delivery.email.to"),
    ({"email": {"to": ["voirie@mairie.fr", "x@y.fr\nBcc: all@evil.fr"]}}, "not an e-mail address"),
    ({"email": {"to": ["Voirie <voirie@mairie.fr>"]}}, "not an e-mail address"),
    ({"open311": {"base_url": "https://x.fr/v2", "api_key": {"env": "K"}, "service_codes": {}}},
     "delivery.open311.service_codes"),
    ({"open311": {"base_url": "https://x.fr/v2", "api_key": {"env": "K"}, "service_codes": {"flood": " "}}},
     "a service_code is empty"),
    ({"open311": {"base_url": "javascript:alert(1)", "api_key": {"env": "K"},
                  "service_codes": {"flood": "F"}}},
     "only http and https"),
])
def test_mistakes_are_named_with_their_place(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(DeliveryConfigError) as err:
        parse_delivery("pm-35401", raw)
    assert str(err.value).startswith("agency pm-35401: invalid delivery section")
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(DeliveryConfigError) as err:
        parse_delivery("a", {"webhook": {"url": "gopher://x"}, "email": {"to": ["nope"]}, "fax": 1})
    assert len(err.value.problems) == 4, err.value.problems  # url, secret missing, address, fax


def test_a_secret_written_in_the_yaml_is_refused_and_never_repeated() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    for section in ({"webhook": {"url": "https://x.fr", "secret": secret}},
                    {"open311": {"base_url": "https://x.fr", "api_key": secret,
                                 "service_codes": {"flood": "F"}}}):
        with pytest.raises(DeliveryConfigError) as err:
            parse_delivery("a", section)
        assert "never write a secret in the YAML" in str(err.value)
        assert secret not in str(err.value) and err.value.__cause__ is None and err.value.__context__ is None


def test_credentials_in_a_url_are_refused_without_being_repeated() -> None:
    with pytest.raises(DeliveryConfigError) as err:
        parse_delivery("a", {"webhook": {"url": "https://bob:hunter2@x.fr/h?token=t0k3n",
                                         "secret": {"env": "S"}}})
    assert "credentials in a URL" in str(err.value)
    assert "hunter2" not in str(err.value) and "t0k3n" not in str(err.value)


def test_secrets_are_read_from_a_file_or_the_environment(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "whsec"
    key_file.write_text("whsec_c2VjcmV0\n")
    monkeypatch.setenv("VEILLE_TEST_OPEN311_KEY", "k-123")
    config = parse_delivery("a", {
        "webhook": {"url": "https://x.fr", "secret": {"file": str(key_file)}},
        "open311": {"base_url": "https://x.fr", "api_key": {"env": "VEILLE_TEST_OPEN311_KEY"},
                    "service_codes": {"flood": "F"}}})
    assert config.webhook is not None and config.open311 is not None
    assert config.webhook.secret.reveal().get_secret_value() == "whsec_c2VjcmV0"
    assert config.open311.api_key.reveal().get_secret_value() == "k-123"
    assert "c2VjcmV0" not in repr(config.webhook.secret.reveal())
    assert check_secrets("a", config) == []


def test_a_missing_secret_says_where_it_was_looked_for(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VEILLE_TEST_NOT_SET", raising=False)
    config = parse_delivery("mairie-1", {
        "webhook": {"url": "https://x.fr", "secret": {"file": str(tmp_path / "absent")}},
        "open311": {"base_url": "https://x.fr", "api_key": {"env": "VEILLE_TEST_NOT_SET"},
                    "service_codes": {"flood": "F"}}})
    problems = check_secrets("mairie-1", config)
    assert len(problems) == 2
    assert f"file {tmp_path / 'absent'} cannot be read" in problems[0]
    assert "environment variable VEILLE_TEST_NOT_SET is empty or not set" in problems[1]
    assert config.open311 is not None
    with pytest.raises(SecretUnavailable):
        config.open311.api_key.reveal()


def test_delivery_settings_refuse_a_bad_network_and_order_the_link_keys(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'localhost' is not an IP network"):
        DeliverySettings(allowed_networks="127.0.0.0/8,localhost")
    monkeypatch.setenv("VEILLE_DELIVERY_LINK_KEY", "new")
    monkeypatch.setenv("VEILLE_DELIVERY_LINK_PREVIOUS_KEYS", "old1, old2")
    monkeypatch.setenv("VEILLE_DELIVERY_ALLOWED_NETWORKS", "10.1.0.0/16")
    s = DeliverySettings()
    assert s.link_keys == ["old1", "old2", "new"]
    assert [str(n) for n in s.networks] == ["10.1.0.0/16"]
