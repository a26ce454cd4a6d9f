"""Realistic provider webhooks for the tests: they live in `streams.simulator.samples`,
which ships in the package because `kycflow simulate` sends them; this module keeps the tests'
old import path working.
"""

from streams.simulator.samples import (
    RECEIVED_AT,
    Webhook,
    deliver,
    idenfy,
    idenfy_company,
    idenfy_identification,
    idwise,
    ondato,
    ondato_document,
    ondato_idv,
    ondato_kyb,
    ondato_kyc,
)

__all__ = [
    "RECEIVED_AT",
    "Webhook",
    "deliver",
    "idenfy",
    "idenfy_company",
    "idenfy_identification",
    "idwise",
    "ondato",
    "ondato_document",
    "ondato_idv",
    "ondato_kyb",
    "ondato_kyc",
]
