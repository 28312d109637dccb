"""What Open311 clients see of the hub: services in French, and the spec's two formats.

A service is an incident category of the territory's routing rules (``service_code`` is the
category, so a request maps to an Incident without a lookup table). Texts are French, the
language of the residents who report. Rendering follows GeoReport v2: JSON arrays, or XML
with the spec's element names (``<services><service>``, ``<service_requests><request>``,
``<errors><error>``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from veille.schemas.models import IncidentCategory, IncidentStatus, Severity
from veille.territory import Territory

# category -> (service_name, description, keywords)
SERVICES: Mapping[IncidentCategory, tuple[str, str, str]] = {
    IncidentCategory.burglary: ("Cambriolage", "Effraction d'un logement, d'un commerce ou d'un local",
                                "cambriolage,effraction,vol"),
    IncidentCategory.theft: ("Vol", "Vol sur la voie publique ou dans un véhicule", "vol,pickpocket"),
    IncidentCategory.assault: ("Agression", "Violence envers une personne", "agression,violence"),
    IncidentCategory.vandalism: ("Dégradation volontaire", "Vandalisme sur un bien public ou privé",
                                 "vandalisme,dégradation,casse"),
    IncidentCategory.drug_trafficking: ("Trafic de stupéfiants", "Point de deal, trafic constaté",
                                        "drogue,deal,trafic"),
    IncidentCategory.noise_nuisance: ("Nuisance sonore", "Bruit sur la voie publique, tapage",
                                      "bruit,tapage,nuisance"),
    IncidentCategory.illegal_dumping: ("Dépôt sauvage", "Déchets ou encombrants abandonnés",
                                       "déchets,encombrants,dépôt sauvage"),
    IncidentCategory.graffiti: ("Tag ou graffiti", "Inscription sur un mur, un mobilier ou un bâtiment",
                                "tag,graffiti"),
    IncidentCategory.urban_rodeo: ("Rodéo urbain", "Conduite dangereuse de deux-roues ou de voitures",
                                   "rodéo,moto,quad"),
    IncidentCategory.public_disorder: ("Trouble à l'ordre public", "Rassemblement, rixe, troubles",
                                       "trouble,rixe,rassemblement"),
    IncidentCategory.broken_streetlight: ("Éclairage public en panne", "Lampadaire éteint ou endommagé",
                                          "lampadaire,éclairage,panne"),
    IncidentCategory.damaged_road: ("Chaussée dégradée", "Nid-de-poule, affaissement, trottoir abîmé",
                                    "voirie,nid-de-poule,chaussée,trottoir"),
    IncidentCategory.damaged_street_furniture: ("Mobilier urbain endommagé", "Banc, barrière, panneau abîmé",
                                                "mobilier,banc,panneau"),
    IncidentCategory.blocked_drain: ("Avaloir bouché", "Grille ou caniveau obstrué, eau qui stagne",
                                     "avaloir,caniveau,égout"),
    IncidentCategory.damaged_playground: ("Aire de jeux endommagée", "Jeu cassé ou dangereux",
                                          "aire de jeux,jeu,enfants"),
    IncidentCategory.abandoned_vehicle: ("Véhicule abandonné", "Véhicule ventouse ou épave",
                                         "véhicule,épave,ventouse"),
    IncidentCategory.fallen_tree: ("Arbre tombé", "Arbre ou grosse branche au sol", "arbre,branche"),
    IncidentCategory.neighbour_dispute: ("Conflit de voisinage", "Différend entre voisins",
                                         "voisinage,conflit,médiation"),
    IncidentCategory.neighbour_noise: ("Bruit de voisinage", "Nuisances sonores d'un voisin",
                                       "bruit,voisin"),
    IncidentCategory.heatwave: ("Canicule", "Personne en difficulté ou lieu dangereux par forte chaleur",
                                "canicule,chaleur"),
    IncidentCategory.flood: ("Inondation", "Rue, cave ou terrain inondé", "inondation,crue,eau"),
    IncidentCategory.flash_flood: ("Crue soudaine", "Montée brutale des eaux, ruissellement",
                                   "crue,ruissellement,orage"),
    IncidentCategory.wildfire: ("Feu de végétation", "Départ de feu de forêt, de champ ou de broussailles",
                                "feu,incendie,forêt"),
    IncidentCategory.storm: ("Tempête", "Dégâts de vent : toiture, lignes, objets projetés",
                             "tempête,vent,orage"),
    IncidentCategory.landslide: ("Glissement de terrain", "Éboulement, coulée de boue",
                                 "glissement,éboulement,boue"),
    IncidentCategory.drought: ("Sécheresse", "Restriction d'eau non respectée, sol fissuré",
                               "sécheresse,eau"),
    IncidentCategory.other: ("Autre signalement", "Tout autre problème sur l'espace public", "autre"),
}

GROUPS: Mapping[str, frozenset[IncidentCategory]] = {
    "Tranquillité publique": frozenset({
        IncidentCategory.burglary, IncidentCategory.theft, IncidentCategory.assault,
        IncidentCategory.vandalism,
        IncidentCategory.drug_trafficking, IncidentCategory.noise_nuisance, IncidentCategory.urban_rodeo,
        IncidentCategory.public_disorder, IncidentCategory.abandoned_vehicle}),
    "Voisinage": frozenset({IncidentCategory.neighbour_dispute, IncidentCategory.neighbour_noise}),
    "Risques climatiques": frozenset({
        IncidentCategory.heatwave, IncidentCategory.flood, IncidentCategory.flash_flood,
        IncidentCategory.wildfire, IncidentCategory.storm, IncidentCategory.landslide,
        IncidentCategory.drought}),
}
DEFAULT_GROUP = "Espace public"

SEVERITY_NAMES: Mapping[Severity, str] = {
    Severity.minor: "Gêne mineure", Severity.moderate: "Gêne importante",
    Severity.severe: "Danger", Severity.critical: "Danger immédiat pour des personnes"}
DEFAULT_SEVERITY = Severity.moderate

# status_notes are fixed labels: a status update's free-text note may name people
# (README, Personal data) and never leaves the agencies' dispatch topics.
STATUS_NOTES: Mapping[IncidentStatus, str] = {
    IncidentStatus.received: "Signalement reçu",
    IncidentStatus.acknowledged: "Signalement pris en compte",
    IncidentStatus.dispatched: "Transmis au service compétent",
    IncidentStatus.on_site: "Intervention en cours",
    IncidentStatus.resolved: "Résolu",
    IncidentStatus.rejected: "Classé sans suite",
    IncidentStatus.reopened: "Rouvert",
}
CLOSED = frozenset({IncidentStatus.resolved, IncidentStatus.rejected})
SERVICE_NOTICE = "Votre signalement a été transmis aux services compétents."


def group_of(category: IncidentCategory) -> str:
    return next((g for g, cats in GROUPS.items() if category in cats), DEFAULT_GROUP)


def service_codes(territory: Territory) -> list[IncidentCategory]:
    """The categories the territory's rules route, in their file order."""
    seen: dict[IncidentCategory, None] = {}
    for rule in territory.rules.incident_rules:
        for category in rule.categories:
            seen.setdefault(IncidentCategory(category), None)
    return list(seen)


def severity_matters(territory: Territory, category: IncidentCategory) -> bool:
    """Whether an escalation rule of the territory depends on this category's severity."""
    return any(rule.categories is None or category in rule.categories for rule in territory.rules.escalations)


def service(territory: Territory, category: IncidentCategory) -> dict[str, Any]:
    name, description, keywords = SERVICES[category]
    return {"service_code": category.value, "service_name": name, "description": description,
            "metadata": severity_matters(territory, category), "type": "realtime",
            "keywords": keywords, "group": group_of(category)}


def definition(territory: Territory, category: IncidentCategory) -> dict[str, Any]:
    """Service definition: a ``severity`` attribute where the territory escalates on it."""
    attributes: list[dict[str, Any]] = []
    if severity_matters(territory, category):
        attributes.append({
            "variable": True, "code": "severity", "datatype": "singlevaluelist", "required": False,
            "datatype_description": f"Par défaut : {SEVERITY_NAMES[DEFAULT_SEVERITY]}", "order": 1,
            "description": "Gravité de la situation",
            "values": [{"key": s.value, "name": label} for s, label in SEVERITY_NAMES.items()]})
    return {"service_code": category.value, "attributes": attributes}


# --------------------------------------------------------------------------- rendering

_ITEM = {"services": "service", "service_requests": "request", "errors": "error", "attributes": "attribute",
         "values": "value", "service_request_updates": "request_update"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _fill(element: ET.Element, data: Mapping[str, Any]) -> None:
    for name, value in data.items():
        child = ET.SubElement(element, name)
        if isinstance(value, list):
            for item in value:
                _fill(ET.SubElement(child, _ITEM.get(name, "item")), item)
        else:
            child.text = _text(value)


def render(fmt: str, root: str, payload: list[dict[str, Any]] | dict[str, Any],
           status: int = 200) -> web.Response:
    """A JSON answer, or the XML one with ``root`` and the spec's item names."""
    if fmt == "json":
        return web.json_response(payload, status=status)
    top = ET.Element(root)
    if isinstance(payload, list):
        for item in payload:
            _fill(ET.SubElement(top, _ITEM[root]), item)
    else:
        _fill(top, payload)
    body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8",
                                                                      xml_declaration=False)
    return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")


def error(fmt: str, status: int, *descriptions: str) -> web.Response:
    return render(fmt, "errors", [{"code": status, "description": d} for d in descriptions], status)
