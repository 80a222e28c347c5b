"""tlspolicy: decide what an SMTP client does about STARTTLS for each delivery attempt.

The public API is re-exported here; nothing is defined in this module but the lookup
that imports a name's module when the name is first read.  These are the
names an embedder needs: load a configuration, resolve a delivery attempt to a
:class:`Decision`, hand the resolver what discovery found about the destination, act
on the decision's outcomes, check a connection before reusing it, and catch this
library's errors.  Everything else is importable from the module that owns it (the
API page of the documentation lists them).

The names are imported under ``TYPE_CHECKING`` for type checkers and readers, and
:data:`_LAZY` says where each lives for the running program (a test keeps the two
the same).
"""

import importlib as _importlib
import typing as _typing

from ._version import __version__

# Names of the module's own are private (underscored): dir() lists the public API.
if _typing.TYPE_CHECKING:
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

#: Where each public name lives.  A name's module is imported on first use (PEP 562),
#: so importing any tlspolicy module (the socketmap server reading the compiled cache,
#: say) does not import every loader, parser and writer a public name needs.
_LAZY: dict[str, str] = {
    "Action": ".outcomes",
    "Config": ".scopes",
    "ConfigError": ".errors",
    "ConfigErrors": ".errors",
    "ConnectionFacts": ".reuse",
    "Decision": ".decision",
    "Destination": ".policies.destination",
    "InvalidDomainError": ".errors",
    "MissingDependencyError": ".errors",
    "MtaStsPolicy": ".policies.mtasts",
    "Observation": ".outcomes",
    "Options": ".options",
    "Outcome": ".outcomes",
    "PlaintextReason": ".reuse",
    "PolicyInputError": ".errors",
    "Reason": ".outcomes",
    "ResolutionError": ".errors",
    "Resolver": ".resolver",
    "ReuseVerdict": ".reuse",
    "Status": ".outcomes",
    "StsMode": ".policies.mtasts",
    "Tls": ".options",
    "TlsPolicyError": ".errors",
    "TlsaLookup": ".policies.dane",
    "TlsaLookupStatus": ".policies.dane",
    "TlsaRecord": ".policies.dane",
    "UnknownBindingError": ".errors",
    "Verification": ".outcomes",
    "load_config": ".formats.loader",
    "loads_toml": ".formats.loader",
}


def __getattr__(name: str) -> object:
    """Import a public name's module the first time the name is read."""
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes as before the lookup: the public names (imported or not
    yet), the submodules imported so far and the dunders, but not the lookup's own."""
    return sorted(name for name in {*globals(), *__all__}
                  if not name.startswith("_") or name.startswith("__"))
