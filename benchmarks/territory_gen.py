"""Synthetic territories for the scale runs (``make scale``): N municipalities with their bodies.

A grid of square municipalities (~4 km sides, the size of an average French commune), in
départements of up to 372 communes (France: ~34,900 communes in 101 départements), grouped
into intercommunalities of 20. Bodies in the proportions of a real département:

* per municipality: a town hall (public works, stormwater, safeguard plan) and a municipal
  police (every town has one here, the worst case for topics and ACLs);
* per intercommunality: a stormwater syndicate over its towns (priority over the town halls,
  as in the example territory), a mediation service and a monitoring cell;
* per département: the SDIS (fire and rescue) and the ARS delegation (health).

The routing rules are the example territory's, so decisions are comparable across sizes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from veille.territory.model import JURISDICTION_FILE, MUNICIPALITIES_FILE, ROUTING_FILE

EXAMPLE = Path(__file__).resolve().parent.parent / "veille" / "territories" / "example"
SIDE_KM = 4.0
PER_DEPARTEMENT = 380
PER_EPCI = 20
LAT0, LON0 = 47.0, -4.5
KM_PER_DEG_LAT = 111.2
KM_PER_DEG_LON = 74.0  # at 48° N: close enough for a synthetic grid


def _departements(count: int) -> list[str]:
    # Real-looking codes: 01..95 without 20 (Corsica's are 2A/2B), then more if needed.
    codes = [f"{d:02d}" for d in range(1, 96) if d != 20]
    if count > len(codes):
        raise ValueError(f"at most {len(codes) * PER_DEPARTEMENT} municipalities")
    return codes[:count]


def _square(col: int, row: int) -> list[list[list[float]]]:
    dlat, dlon = SIDE_KM / KM_PER_DEG_LAT, SIDE_KM / KM_PER_DEG_LON
    lat, lon = LAT0 + row * dlat, LON0 + col * dlon
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]
    return [[[round(x, 6), round(y, 6)] for x, y in ring]]


def generate(directory: Path, municipalities: int) -> dict[str, int]:
    """Write a territory of ``municipalities`` towns into ``directory``; returns its counts."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    depts = _departements(-(-municipalities // PER_DEPARTEMENT))
    width = max(1, round(municipalities ** 0.5))
    features: list[dict[str, Any]] = []
    agencies: list[dict[str, Any]] = []
    areas: list[dict[str, Any]] = []
    by_dept: dict[str, list[str]] = {}
    for i in range(municipalities):
        dept = depts[i // PER_DEPARTEMENT]
        insee = f"{dept}{i % PER_DEPARTEMENT + 1:03d}"
        by_dept.setdefault(dept, []).append(insee)
        features.append({"type": "Feature", "properties": {"insee": insee, "name": f"Commune {insee}",
                                                           "population": 1800},
                         "geometry": {"type": "Polygon", "coordinates": _square(i % width, i // width)}})
        agencies.append({"id": f"mairie-{insee}", "name": f"Mairie {insee}", "level": "municipal",
                         "services": ["public_works", "stormwater", "municipal_safeguard"],
                         "home_municipality": insee})
        agencies.append({"id": f"pm-{insee}", "name": f"Police municipale {insee}", "level": "municipal",
                         "services": ["municipal_police"], "home_municipality": insee})
        for service in ("public_works", "stormwater", "municipal_safeguard"):
            areas.append({"agency": f"mairie-{insee}", "service": service, "municipalities": [insee]})
        areas.append({"agency": f"pm-{insee}", "service": "municipal_police", "municipalities": [insee]})
    epcis = 0
    for dept, towns in by_dept.items():
        agencies.append({"id": f"sdis{dept}", "name": f"SDIS {dept}", "level": "departmental",
                         "services": ["fire_rescue"], "home_municipality": None})
        agencies.append({"id": f"ars-dd{dept}", "name": f"ARS DD {dept}", "level": "state",
                         "services": ["health"], "home_municipality": None})
        areas.append({"agency": f"sdis{dept}", "service": "fire_rescue", "municipalities": towns})
        areas.append({"agency": f"ars-dd{dept}", "service": "health", "municipalities": towns})
        for start in range(0, len(towns), PER_EPCI):
            members = towns[start:start + PER_EPCI]
            epci = f"{dept}-{start // PER_EPCI + 1:02d}"
            epcis += 1
            for kind, service, prio in (("syndicat", "stormwater", 10), ("mediation", "social_mediation", 0),
                                        ("cellule", "monitoring_cell", 0)):
                agencies.append({"id": f"{kind}-{epci}", "name": f"{kind} {epci}", "level": "intercommunal",
                                 "services": [service], "home_municipality": None})
                areas.append({"agency": f"{kind}-{epci}", "service": service, "municipalities": members,
                              "priority": prio})
    collection = {"type": "FeatureCollection", "features": features}
    (directory / MUNICIPALITIES_FILE).write_text(json.dumps(collection))
    (directory / JURISDICTION_FILE).write_text(yaml.safe_dump(
        {"intercommunality": f"Synthetic {municipalities}", "departement": depts[0],
         "agencies": agencies, "service_areas": areas}, sort_keys=False))
    rules = yaml.safe_load((EXAMPLE / ROUTING_FILE).read_text())
    (directory / ROUTING_FILE).write_text(yaml.safe_dump(rules, sort_keys=False))
    return {"municipalities": municipalities, "agencies": len(agencies), "service_areas": len(areas),
            "departements": len(by_dept), "intercommunalities": epcis}
