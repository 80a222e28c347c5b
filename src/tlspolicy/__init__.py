"""tlspolicy: decide what an SMTP client does about STARTTLS for each delivery attempt.

The public API is re-exported here; nothing is defined in this module.  These are the
names an embedder needs: load a configuration, resolve a delivery attempt to a
:class:`Decision`, hand the resolver what discovery found about the destination, act
on the decision's outcomes, check a connection before reusing it, and catch this
library's errors.  Everything else is importable from the module that owns it (the
API page of the documentation lists them).
"""

from ._version import __version__
from .decision import Decision
from .errors import (
    ConfigError,
    ConfigErrors,
    InvalidDomainError,
    MissingDependencyError,
    PolicyInputError,
    ResolutionError,
    TlsPolicyError,
    UnknownBindingError,
)
from .formats.loader import load_config, loads_toml
from .options import Options, Tls
from .outcomes import Action, Observation, Outcome, Reason, Status, Verification
from .policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from .policies.destination import Destination
from .policies.mtasts import MtaStsPolicy, StsMode
from .resolver import Resolver
from .reuse import ConnectionFacts, PlaintextReason, ReuseVerdict
from .scopes import Config

__all__ = [
    "Action",
    "Config",
    "ConfigError",
    "ConfigErrors",
    "ConnectionFacts",
    "Decision",
    "Destination",
    "InvalidDomainError",
    "MissingDependencyError",
    "MtaStsPolicy",
    "Observation",
    "Options",
    "Outcome",
    "PlaintextReason",
    "PolicyInputError",
    "Reason",
    "ResolutionError",
    "Resolver",
    "ReuseVerdict",
    "Status",
    "StsMode",
    "Tls",
    "TlsPolicyError",
    "TlsaLookup",
    "TlsaLookupStatus",
    "TlsaRecord",
    "UnknownBindingError",
    "Verification",
    "__version__",
    "load_config",
    "loads_toml",
]
