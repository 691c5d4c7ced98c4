"""Domains, one package each, registered by name (`data.domain`): tools, prompts, evaluation form, data."""

from tunelab.domains import hotel, units  # noqa: F401  (each package registers its domain)
from tunelab.domains.base import (DOMAINS, Domain, Tool, domain_of_tool, domain_tools, get_domain, record_view,
                                  register_domain)

__all__ = ["DOMAINS", "Domain", "Tool", "domain_of_tool", "domain_tools", "get_domain", "record_view",
           "register_domain"]
