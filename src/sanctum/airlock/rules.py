"""The rules the airlock applies to one project: how many approvals an export needs, what the
automatic checks look for, and how large an import may be.

Why one function per direction (``export_rules``, ``import_rules``) rather than settings read all
over: the data management plan (built separately) declares a project's export rules (allowed
output types, thresholds, number of reviewers); it overrides them here, in one place, and every
check, transition and page follows. Defaults follow ACRO's (``safe_threshold: 10``,
``zeros_are_disclosive: True``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from sanctum.db.models import Project

MIB = 1024 * 1024

#: File kinds an export may carry (see ``sniff``); anything else fails the type check.
DEFAULT_EXPORT_TYPES = frozenset({"csv", "parquet", "json", "text", "png", "jpeg", "pdf", "svg"})

#: Column names that identify people (compared after ``normalise_name``). A project's own
#: declared identifier columns (from its data management plan) are added to these.
DEFAULT_IDENTIFIER_COLUMNS = frozenset(
    {
        "name", "firstname", "lastname", "surname", "givenname", "fullname", "patientname",
        "patient", "patientid", "personid", "subjectid", "participantid", "mrn",
        "medicalrecordnumber", "hospitalnumber", "nhsnumber", "nhsno", "ssn",
        "socialsecuritynumber", "bsn", "insurancenumber", "email", "emailaddress", "phone",
        "phonenumber", "telephone", "mobile", "address", "streetaddress", "street", "postcode",
        "postalcode", "zipcode", "zip", "ipaddress", "accessionnumber", "studyinstanceuid",
        "seriesinstanceuid", "sopinstanceuid",
    }
)  # fmt: skip

_NON_ALNUM = re.compile(r"[^a-z0-9]")


def normalise_name(name: str) -> str:
    """``Patient ID`` / ``patient_id`` / ``PatientID`` → ``patientid``."""
    return _NON_ALNUM.sub("", name.lower())


@dataclass(frozen=True)
class ExportRules:
    approvals: int = 2  # independent approvals, by members who are not the requester (1 or 2)
    min_cell_count: int = 10  # a frequency-table cell below this (and above 0) fails
    zeros_need_review: bool = True  # zero cells can disclose (structural vs. sampling zeros)
    max_rows: int = 10_000  # more rows than this looks like row-level data, which does not leave
    max_file_bytes: int = 100 * MIB
    allowed_types: frozenset[str] = DEFAULT_EXPORT_TYPES
    allow_images: bool = False  # DICOM and raw arrays (.npy, .npz, NIfTI): blocked unless allowed
    identifier_columns: frozenset[str] = DEFAULT_IDENTIFIER_COLUMNS
    preview_rows: int = 20
    preview_max_bytes: int = 5 * MIB  # larger files are not previewed on the review page
    dmp_version: int | None = None  # the data management plan these rules came from, if any

    def as_dict(self) -> dict[str, object]:
        """What reviewers are shown as 'the rules in force' (sets as sorted lists)."""
        return {
            "approvals": self.approvals,
            "min_cell_count": self.min_cell_count,
            "zeros_need_review": self.zeros_need_review,
            "max_rows": self.max_rows,
            "max_file_bytes": self.max_file_bytes,
            "allowed_types": sorted(self.allowed_types),
            "allow_images": self.allow_images,
            "dmp_version": self.dmp_version,
        }


@dataclass(frozen=True)
class ImportRules:
    max_bytes: int = 100 * MIB
    # Imports are code dependencies and reference tables, not patient data: DICOM and raw arrays
    # come in through de-identifying ingest only.
    blocked_types: frozenset[str] = field(default_factory=lambda: frozenset({"dicom", "npy", "npz", "nifti"}))


def export_rules(session: Session, project: Project) -> ExportRules:
    """The export rules in force for ``project``. The data management plan overrides them here."""
    from sanctum.dmp.enforce import export_rules as from_dmp  # late: the DMP reads these rules' types

    return from_dmp(session, project, ExportRules(approvals=project.export_approvals))


def import_rules(session: Session, project: Project) -> ImportRules:
    del session, project
    return ImportRules()
