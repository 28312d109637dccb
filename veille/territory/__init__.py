"""The territory and its jurisdiction rules: the one place that says who acts where.

A package with the model at the bottom: ``model`` (municipalities, agencies, service areas,
rules; ``index``, the point lookup it carries) <- ``checks`` (gaps, overlaps, references) <-
``files`` (the file formats, reading, the cached :func:`load_territory`) <- ``cli``. The file
formats are described in :mod:`veille.territory.files`.

On the model too, the answers the hub asks of it, pure functions without Kafka:
``routing`` (who must act on an incident or a CAP alert; ``alert_area``, the ground an alert
covers) and ``dispatch`` (the keyed id of each dispatch it yields). The router
(``veille.streams``) applies them to messages; the simulator and the tests ask them directly.
They are imported from their modules, not from here, so that loading the model does not load
the routing's geodesy.
"""

from veille.territory.checks import validate_territory
from veille.territory.files import (
    AgencySpec,
    JurisdictionSpec,
    MunicipalityCollection,
    ServiceAreaSpec,
    load_territory,
    read_territory,
)
from veille.territory.index import MunicipalityIndex
from veille.territory.model import (
    AGENCY_ID_PATTERN,
    AREA_TOLERANCE,
    JURISDICTION_FILE,
    MUNICIPALITIES_FILE,
    ROUTING_FILE,
    RULE_ID_PATTERN,
    Agency,
    AgencyLevel,
    AlertRule,
    DeadlineRule,
    EscalationRule,
    IncidentRule,
    Issue,
    Municipality,
    PcsRule,
    RoutingRules,
    ServiceArea,
    ServicePolicy,
    Territory,
    TerritoryError,
)

__all__ = [
    "AGENCY_ID_PATTERN", "AREA_TOLERANCE", "JURISDICTION_FILE", "MUNICIPALITIES_FILE", "ROUTING_FILE",
    "RULE_ID_PATTERN", "Agency", "AgencyLevel", "AgencySpec", "AlertRule", "DeadlineRule", "EscalationRule",
    "IncidentRule", "Issue", "JurisdictionSpec", "Municipality", "MunicipalityCollection",
    "MunicipalityIndex", "PcsRule", "RoutingRules", "ServiceArea", "ServiceAreaSpec", "ServicePolicy",
    "Territory", "TerritoryError", "load_territory", "read_territory", "validate_territory",
]
