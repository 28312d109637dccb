"""docs/delivery.md documents every setting and every key of an agency's delivery section."""

from __future__ import annotations

from pathlib import Path

from veille.deliver.config import EmailDelivery, Open311Delivery, WebhookDelivery
from veille.deliver.settings import DeliverySettings

DOC = (Path(__file__).parents[2] / "docs" / "delivery.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    missing = [f"VEILLE_DELIVERY_{name.upper()}" for name in DeliverySettings.model_fields
               if f"`VEILLE_DELIVERY_{name.upper()}`" not in DOC]
    assert not missing


def test_every_key_of_the_delivery_section_is_documented() -> None:
    missing = []
    sections = (("webhook", WebhookDelivery), ("email", EmailDelivery), ("open311", Open311Delivery))
    for method, model in sections:
        for name in model.model_fields:
            if f"`{method}.{name}`" not in DOC and f"`*.{name}`" not in DOC:
                missing.append(f"{method}.{name}")
    assert not missing
