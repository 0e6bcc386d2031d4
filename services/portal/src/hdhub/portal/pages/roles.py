"""The roles as the pages name and explain them (the API's role names, translated)."""

from __future__ import annotations

from hdhub.common.auth import Role
from hdhub.portal.pages.i18n import N_

ROLES = (
    (Role.MANAGER, N_("User Manager"), N_("Manages the organisation, its members and their roles.")),
    (Role.DP_MANAGER, N_("DP Manager"), N_("Adds and removes members and gives them data roles.")),
    (
        Role.CERTIFICATE_EDITOR,
        N_("Certificate Editor"),
        N_("Uploads the organisation's eHealth certificate."),
    ),
    (Role.CSV_UPLOAD_MANAGER, N_("CSV Upload Manager"), N_("Uploads CSV files and exports data.")),
    (Role.NIPPIN_MANAGER, N_("NIPPIN Manager"), N_("Handles billing messages.")),
    (Role.REGISTRANT, N_("Registrant"), N_("Enters and submits registrations.")),
    (Role.READER, N_("Reader"), N_("Reads registrations, changes nothing.")),
)
ROLE_NAMES = {str(role): name for role, name, _ in ROLES}
